// Turns the configuration into what the health checker needs: one probe target per backend
// (with the probe credentials already chosen) and the [health] thresholds.
#pragma once

#include <vector>

#include "health/check_settings.hpp"
#include "health/probe_target.hpp"
#include "proxy/config/config.hpp"

namespace pgf::router {

// In configuration order (by priority). The probe logs in as [health] user/password when
// set, else as the backend URL's user with the backend's password.
std::vector<health::probe_target> probe_targets(const config::config& cfg);

health::check_settings check_settings(const config::health_settings& health);

}  // namespace pgf::router
