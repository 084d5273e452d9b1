// The result of one probe, as the state machine consumes it.
#pragma once

#include <chrono>
#include <string>

#include "health/health_view.hpp"

namespace pgf::health {

struct probe_outcome {
  // The server answered the check query. False is a failed probe: `reason` says why.
  bool is_alive = false;
  backend_role role = backend_role::unknown;
  bool read_only = false;  // default_transaction_read_only = on
  // The ready_query's answer; true when there is none. A server that is alive but not ready
  // is not a failed probe: `reason` then says why it is not ready.
  bool ready = true;
  std::string reason;
  std::chrono::microseconds latency{0};  // the check query's round trip
};

}  // namespace pgf::health
