// Probe targets and thresholds from the configuration.
#include "proxy/router/probe_targets.hpp"

namespace pgf::router {

std::vector<health::probe_target> probe_targets(const config::config& cfg) {
  std::vector<health::probe_target> targets;
  targets.reserve(cfg.backends.size());
  for (const auto& b : cfg.backends) {
    health::probe_target t;
    t.name = b.name;
    t.host = b.endpoint.host;
    t.port = b.endpoint.port;
    t.user = cfg.health.user.value_or(b.endpoint.user.value_or(""));
    t.password = cfg.health.password.value_or(b.effective_password().value_or(""));
    t.dbname = b.endpoint.dbname.value_or("");
    t.ready_query = b.ready_query.value_or("");
    targets.push_back(std::move(t));
  }
  return targets;
}

health::check_settings check_settings(const config::health_settings& health) {
  return {health.interval, health.timeout, health.fall, health.rise};
}

}  // namespace pgf::router
