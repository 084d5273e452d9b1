// What the probes currently believe about every backend: an immutable snapshot, published
// by the checker and read by the router and the admin API without locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pgf::health {

using clock = std::chrono::steady_clock;

enum class backend_state { unknown, up, down };
enum class backend_role { unknown, primary, standby };

const char* to_string(backend_state state);
const char* to_string(backend_role role);

struct backend_health {
  std::string name;  // the backend's configured name
  backend_state state = backend_state::unknown;
  backend_role role = backend_role::unknown;
  bool read_only = false;  // default_transaction_read_only = on
  bool ready = true;       // the ready_query's answer; true when there is none
  // Why the backend is not usable: the last failed probe's reason, or why the ready_query
  // said no after a successful probe. Empty once a probe succeeds with the backend ready.
  std::string last_error;
  std::chrono::microseconds latency{0};  // the last successful probe's round trip
  clock::time_point since{};             // when `state` last changed (or tracking began)
  // When the current run of failed probes began (the first of consecutive_failures); the
  // epoch of the clock while the last probe succeeded. Failover durations start here.
  clock::time_point failing_since{};
  std::uint32_t consecutive_failures = 0;
  std::uint32_t consecutive_successes = 0;
  std::uint64_t probes = 0;         // probes completed, successful or not
  std::uint64_t failed_probes = 0;  // of those, the ones that failed
};

struct health_view {
  std::uint64_t generation = 0;          // grows with every published change
  bool first_round_complete = false;     // every backend has been probed at least once
  std::vector<backend_health> backends;  // in configuration order (by priority)
};

using health_view_ptr = std::shared_ptr<const health_view>;

}  // namespace pgf::health
