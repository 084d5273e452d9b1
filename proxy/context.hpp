// State shared by every worker thread: the configuration, the router, cancel keys and
// the process-wide connection counters. Owned by the server; outlives every session.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/config/config.hpp"
#include "proxy/router/router.hpp"
#include "proxy/session/cancel_registry.hpp"

namespace pgf {

struct proxy_context {
  proxy_context(std::shared_ptr<const config::config> c, router::router& r)
      : cfg(std::move(c)), router(r) {}

  // The configuration sessions start under. Replaced only on the control thread.
  std::shared_ptr<const config::config> cfg;
  router::router& router;
  session::cancel_registry cancels;
  std::atomic<std::uint32_t> client_count{0};
  std::atomic<std::uint64_t> next_session_id{1};
  std::atomic<bool> shutting_down{false};
  // A session saw a server refuse, reset or ignore it: probe that backend (its index in
  // the configuration) now. Any thread; set once before the workers start.
  std::function<void(std::size_t)> report_sign_of_death;
};

}  // namespace pgf
