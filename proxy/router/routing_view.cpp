// The 57P03 detail text built from a routing view, and the names of route states.
#include "proxy/router/routing_view.hpp"

#include <fmt/format.h>

namespace pgf::router {

const char* to_string(route_status status) {
  switch (status) {
    case route_status::eligible:
      return "eligible";
    case route_status::disabled:
      return "disabled";
    case route_status::unknown:
      return "unknown";
    case route_status::down:
      return "down";
    case route_status::role:
      return "role";
    case route_status::read_only:
      return "read_only";
    case route_status::not_ready:
      return "not_ready";
    case route_status::fenced:
      return "fenced";
    case route_status::promoting:
      return "promoting";
    case route_status::removed:
      return "removed";
  }
  return "unknown";
}

bool is_unfit(route_status status) {
  switch (status) {
    case route_status::down:
    case route_status::unknown:
    case route_status::role:
    case route_status::read_only:
    case route_status::not_ready:
    case route_status::removed:
      return true;
    case route_status::eligible:
    case route_status::disabled:
    case route_status::fenced:
    case route_status::promoting:
      return false;
  }
  return true;
}

std::string routing_view::unavailable_detail() const {
  std::string out;
  for (const auto& b : backends) {
    if (!out.empty()) {
      out += '\n';
    }
    if (b.eligible) {
      out += fmt::format("backend {}: eligible", b.name);
    } else {
      out += fmt::format("backend {}: {}", b.name, b.why_not.empty() ? "not usable" : b.why_not);
    }
  }
  return out;
}

}  // namespace pgf::router
