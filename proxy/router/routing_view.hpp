// The router's published decision: which backend is active, under which epoch, and why
// every other backend is not. Immutable once published; sessions read it without locks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.hpp"

namespace pgf::router {

// Why a backend can or cannot take new work: the most decisive reason only.
enum class route_status {
  eligible,
  disabled,   // by an operator
  unknown,    // not probed yet
  down,       // probes fail
  role,       // standby or primary where target_session_attrs wants the other
  read_only,  // default_transaction_read_only = on under read-write
  not_ready,  // its ready_query did not return true
  fenced,     // usable, but it missed writes made elsewhere
  promoting,  // a standby whose promotion was requested and has not finished
  removed,    // no longer in the configuration
};

// "eligible", "disabled", "unknown", "down", "role", "read_only", "not_ready", "fenced",
// "promoting", "removed": log fields, event texts and switch reasons use these words.
const char* to_string(route_status status);

// True when the status says the server itself is gone or unfit for the work (down, not yet
// probed, the wrong role, read-only, not ready, no longer configured), as opposed to an
// operator or the failover policy moving traffic away from a healthy server (disabled,
// fenced). Sessions on an unfit server end at once; the others drain.
bool is_unfit(route_status status);

struct backend_route_state {
  std::string name;
  bool eligible = false;
  bool fenced = false;
  bool disabled = false;  // taken out of routing by an operator
  route_status status = route_status::unknown;
  std::string why_not;  // empty when eligible: "down: connection refused", "fenced: ...", ...
};

struct routing_view {
  std::uint64_t generation = 0;       // grows with every publication
  std::uint64_t epoch = 0;            // grows with every switch of the active backend
  std::optional<std::size_t> active;  // index into cfg->backends and backends
  bool deciding = false;              // the router has not made its first choice yet (startup_wait)
  bool paused = false;                // new work is held (operator pause or a switchover's drain)
  std::string pause_reason;           // why, in words, for the clients held too long
  // The switch that started this epoch came after a drain (a planned switchover waited
  // drain_timeout, or was forced not to): sessions still on an older epoch close at once
  // with 57P01. Otherwise a move away from a healthy backend gives them drain_timeout.
  bool drained = false;
  // While a switchover drains: the backend it will switch to, and the epoch it will start.
  // New sessions may log in there at once (they count as that epoch's) but wait before
  // their first query until the epoch has moved; everything else stays held.
  std::optional<std::size_t> staged;
  std::uint64_t staged_epoch = 0;
  // The switch that started this epoch: a short word ("down", "failback", "switchover",
  // ...) and the same in words. Empty when no switch happened since start.
  std::string switch_reason;
  std::string switch_detail;
  std::shared_ptr<const config::config> cfg;
  std::vector<backend_route_state> backends;  // same order as cfg->backends

  const config::backend_config* active_backend() const {
    return active ? &cfg->backends[*active] : nullptr;
  }
  // One line per backend saying why it cannot take new work: the 57P03 detail.
  std::string unavailable_detail() const;
};

using routing_view_ptr = std::shared_ptr<const routing_view>;

}  // namespace pgf::router
