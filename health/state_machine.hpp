// One backend's health state: turns a sequence of probe outcomes into unknown/up/down plus
// what the last probes said. Pure: no I/O, no clock of its own, not thread-safe (the
// checker owns one per backend on its thread).
//
// Transitions:
//   unknown -> up    after 1 success   (startup must not wait `rise` probes to route)
//   unknown -> down  after 1 failure   (nor keep sending work to a backend never seen alive)
//   up      -> down  after `fall` consecutive failures
//   down    -> up    after `rise` consecutive successes
// A success whose ready_query said no is still a success: the state can be up with
// ready = false. Role, read_only and ready follow every success at once, whatever the state;
// a failure keeps the last known values. A threshold of 0 acts as 1.
#pragma once

#include <cstdint>
#include <string>

#include "health/health_view.hpp"
#include "health/probe_outcome.hpp"

namespace pgf::health {

class state_machine {
 public:
  state_machine(std::string name, std::uint32_t fall, std::uint32_t rise, clock::time_point now);

  // Applies one probe outcome observed at `now`; returns whether the state changed.
  bool record(const probe_outcome& outcome, clock::time_point now);

  // New thresholds (a reload); the consecutive counts so far keep counting.
  void set_thresholds(std::uint32_t fall, std::uint32_t rise);

  const backend_health& health() const { return health_; }

 private:
  bool record_success(const probe_outcome& outcome, clock::time_point now);
  bool record_failure(const probe_outcome& outcome, clock::time_point now);
  void move_to(backend_state state, clock::time_point now);

  backend_health health_;
  std::uint32_t fall_;
  std::uint32_t rise_;
};

}  // namespace pgf::health
