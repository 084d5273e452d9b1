// How often and how strictly the health checker probes: the [health] section's thresholds
// as the checker uses them. Probe credentials are already folded into each probe_target.
#pragma once

#include <chrono>
#include <cstdint>

namespace pgf::health {

struct check_settings {
  std::chrono::milliseconds interval{250};  // from the start of one probe to the next
  std::chrono::milliseconds timeout{400};   // connect and queries together
  std::uint32_t fall = 2;                   // consecutive failures that take `up` to `down`
  std::uint32_t rise = 2;                   // consecutive successes that take `down` to `up`
};

// After a failed probe the next starts at once, but never sooner than this after the start
// of the previous one, so that a port refusing instantly cannot make the checker spin.
inline constexpr std::chrono::milliseconds min_probe_gap{20};

}  // namespace pgf::health
