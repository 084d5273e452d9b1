// State shared by every worker thread: the configuration, the router, cancel keys and
// the process-wide connection counters. Owned by the server; outlives every session.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/config/config.hpp"
#include "proxy/metrics/metrics.hpp"
#include "proxy/router/router.hpp"
#include "proxy/session/cancel_registry.hpp"

namespace pgf {

struct proxy_context {
  proxy_context(router::router& r, metrics::metrics& m) : router(r), metrics(m) {}

  // The configuration in force is the router's: router.view()->cfg.
  router::router& router;
  metrics::metrics& metrics;
  session::cancel_registry cancels;
  std::atomic<std::uint32_t> client_count{0};
  std::atomic<std::uint64_t> next_session_id{1};
  std::atomic<bool> shutting_down{false};
  // A session saw a server refuse, reset or ignore it: probe that backend (its index in
  // the configuration) now. Any thread; set once before the workers start.
  std::function<void(std::size_t)> report_sign_of_death;

  // A session finished logging in under `epoch`. The first one to do so for a new epoch
  // calls on_first_served (any thread; set once before the workers start), which ends the
  // failover's timing. Costs one relaxed load per login otherwise.
  void note_served(std::uint64_t epoch) {
    auto seen = served_epoch.load(std::memory_order_relaxed);
    while (epoch > seen) {
      if (served_epoch.compare_exchange_weak(seen, epoch, std::memory_order_relaxed)) {
        if (on_first_served) {
          on_first_served(epoch);
        }
        return;
      }
    }
  }
  std::atomic<std::uint64_t> served_epoch{0};
  std::function<void(std::uint64_t)> on_first_served;
};

}  // namespace pgf
