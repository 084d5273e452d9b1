// Thresholds and bookkeeping of one backend's health state; see state_machine.hpp for the
// transitions.
#include "health/state_machine.hpp"

#include <algorithm>
#include <utility>

namespace pgf::health {

state_machine::state_machine(std::string name, std::uint32_t fall, std::uint32_t rise,
                             clock::time_point now)
    : fall_(std::max<std::uint32_t>(fall, 1)), rise_(std::max<std::uint32_t>(rise, 1)) {
  health_.name = std::move(name);
  health_.since = now;
}

void state_machine::set_thresholds(std::uint32_t fall, std::uint32_t rise) {
  fall_ = std::max<std::uint32_t>(fall, 1);
  rise_ = std::max<std::uint32_t>(rise, 1);
}

bool state_machine::record(const probe_outcome& outcome, clock::time_point now) {
  ++health_.probes;
  if (outcome.is_alive) {
    return record_success(outcome, now);
  }
  return record_failure(outcome, now);
}

bool state_machine::record_success(const probe_outcome& outcome, clock::time_point now) {
  health_.consecutive_failures = 0;
  health_.failing_since = {};
  ++health_.consecutive_successes;

  health_.role = outcome.role;
  health_.read_only = outcome.read_only;
  health_.ready = outcome.ready;
  health_.latency = outcome.latency;
  health_.last_error = outcome.ready ? std::string() : outcome.reason;

  bool rises = health_.state == backend_state::unknown ||
               (health_.state == backend_state::down && health_.consecutive_successes >= rise_);
  if (!rises) {
    return false;
  }
  move_to(backend_state::up, now);
  return true;
}

bool state_machine::record_failure(const probe_outcome& outcome, clock::time_point now) {
  ++health_.failed_probes;
  health_.consecutive_successes = 0;
  if (health_.consecutive_failures++ == 0) {
    health_.failing_since = now;
  }
  health_.last_error = outcome.reason;

  bool falls = health_.state == backend_state::unknown ||
               (health_.state == backend_state::up && health_.consecutive_failures >= fall_);
  if (!falls) {
    return false;
  }
  move_to(backend_state::down, now);
  return true;
}

void state_machine::move_to(backend_state state, clock::time_point now) {
  health_.state = state;
  health_.since = now;
}

}  // namespace pgf::health
