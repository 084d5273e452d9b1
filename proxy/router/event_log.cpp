// The bounded event buffer and the names of event kinds.
#include "proxy/router/event_log.hpp"

#include <utility>

namespace pgf::router {

const char* to_string(event_kind kind) {
  switch (kind) {
    case event_kind::switched:
      return "switch";
    case event_kind::state:
      return "state";
    case event_kind::fenced:
      return "fenced";
    case event_kind::unfenced:
      return "unfenced";
    case event_kind::operator_action:
      return "operator";
    case event_kind::promote:
      return "promote";
    case event_kind::hook:
      return "hook";
  }
  return "state";
}

void event_log::add(router_event event) {
  std::lock_guard lock(mutex_);
  if (events_.size() == capacity) {
    events_.pop_front();
  }
  events_.push_back(std::move(event));
}

std::vector<router_event> event_log::snapshot() const {
  std::lock_guard lock(mutex_);
  return {events_.begin(), events_.end()};
}

}  // namespace pgf::router
