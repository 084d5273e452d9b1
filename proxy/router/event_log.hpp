// The router's recent events (switches, state changes, fencing, operator actions,
// promotions, hook results) as shown by GET /events: a ring buffer of the last 200.
//
// Thread-safe: the control thread, the hook and promoter threads add; the admin API reads.
// A short mutex guards it; nothing on the data path touches it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pgf::router {

enum class event_kind { switched, state, fenced, unfenced, operator_action, promote, hook };

// "switch", "state", "fenced", "unfenced", "operator", "promote", "hook"
const char* to_string(event_kind kind);

struct router_event {
  std::chrono::system_clock::time_point time;
  event_kind kind = event_kind::state;
  std::string backend;              // the backend concerned; empty for switches and hooks
  std::optional<std::string> from;  // switch, hook: the previous active; state: old status
  std::optional<std::string> to;    // switch, hook: the new active; state: new status
  std::uint64_t epoch = 0;
  std::string reason;  // switch: short reason; others: what happened, in words
  std::string who;     // "router" for its own decisions, else the operator
};

class event_log {
 public:
  static constexpr std::size_t capacity = 200;

  void add(router_event event);
  // Oldest first.
  std::vector<router_event> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::deque<router_event> events_;
};

}  // namespace pgf::router
