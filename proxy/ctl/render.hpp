// How `pgfailover ctl` shows the admin API's JSON answers on a terminal. The server's
// answer is trusted no more than any input: a member that is missing or of another type
// shows as "-", and control characters in its strings are replaced by spaces so that no
// escape sequence reaches the terminal.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace pgf::ctl {

// `text` with every control character (below 0x20, and 0x7f) replaced by a space.
std::string printable(std::string_view text);

// GET /status: a header line (active, epoch, paused, fenced when any), then one row per
// backend under NAME PRIO STATE ROLE LATENCY ACTIVE ELIGIBLE NOTE, columns aligned.
// LATENCY is shown for backends that are up only.
std::string render_status(const boost::json::value& status);

// GET /events ({"events": [...]}, oldest first): a header line, then one row per event
// under TIME KIND EPOCH CHANGE WHO REASON. CHANGE is "FROM->TO" for a switch, "BACKEND:
// FROM->TO" for a state change (there from and to are statuses), else the backend.
std::string render_events(const boost::json::value& events);

// The answer to an action: "<what>: done (epoch 4, active pg2)" when the answer carries
// "epoch" or "active", else "<what>: ok"; then reload's warnings and restart-only keys.
std::string render_action(std::string_view what, const boost::json::value& answer);

}  // namespace pgf::ctl
