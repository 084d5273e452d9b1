// Names of the health states as the admin API, the logs and the metrics print them.
#include "health/health_view.hpp"

namespace pgf::health {

const char* to_string(backend_state state) {
  switch (state) {
    case backend_state::unknown:
      return "unknown";
    case backend_state::up:
      return "up";
    case backend_state::down:
      return "down";
  }
  return "unknown";
}

const char* to_string(backend_role role) {
  switch (role) {
    case backend_role::unknown:
      return "unknown";
    case backend_role::primary:
      return "primary";
    case backend_role::standby:
      return "standby";
  }
  return "unknown";
}

}  // namespace pgf::health
