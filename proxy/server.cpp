// Server: start-up, signals and the graceful shutdown sequence.
#include "proxy/server.hpp"

#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "health/checker.hpp"
#include "protocol/constants.hpp"
#include "proxy/admin/admin_server.hpp"
#include "proxy/admin/operator_actions.hpp"
#include "proxy/context.hpp"
#include "proxy/listener/listener.hpp"
#include "proxy/metrics/metrics.hpp"
#include "proxy/router/probe_targets.hpp"
#include "proxy/router/router.hpp"
#include "proxy/session/session.hpp"
#include "proxy/worker.hpp"

namespace pgf {

namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

// Each client costs a client and a server descriptor; keep some for listeners and probes.
void raise_file_limit(std::uint32_t max_clients) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  auto needed = rlim_t{max_clients} * 2 + 64;
  if (limit.rlim_cur < needed) {
    spdlog::warn("file_limit_low limit={} needed={} max_client_connections={}", limit.rlim_cur,
                 needed, max_clients);
  }
}

// Limitation: the proxy does not authenticate clients itself and does not pool yet, so a
// configuration asking for either is refused here rather than served in passthrough
// session mode behind the operator's back. The configuration keys exist already so that
// files written today keep loading once both land.
void check_supported(const config::config& cfg) {
  if (cfg.proxy.mode != config::pool_mode::session) {
    throw std::runtime_error(
        "pool_mode = \"transaction\" is not supported yet; use pool_mode = \"session\"");
  }
  if (cfg.proxy.auth != config::auth_method::passthrough) {
    throw std::runtime_error(
        "proxy-side authentication is not supported yet; use auth = \"passthrough\" (the "
        "backend authenticates each client)");
  }
}

std::vector<std::string> backend_names(const config::config& cfg) {
  std::vector<std::string> names;
  for (const auto& b : cfg.backends) {
    names.push_back(b.name);
  }
  return names;
}

}  // namespace

struct server::impl {
  explicit impl(config::config c)
      : cfg(std::make_shared<const config::config>(std::move(c))),
        metrics(cfg->proxy.workers, backend_names(*cfg)),
        router(control, cfg, cfg->proxy.state_file),
        ctx(router, metrics),
        listener(control, ctx, workers),
        checker(router::probe_targets(*cfg), router::check_settings(cfg->health),
                [this](health::health_view_ptr view) { on_health(std::move(view)); }),
        operators({control, router, checker, metrics, workers, cfg->source_path, check_supported,
                   [this] { return ctx.shutting_down.load(); }}),
        admin(control, operators, metrics, admin::admin_server_options::from(cfg->admin)) {}

  net::awaitable<void> wait_for_signals();
  net::awaitable<void> wait_for_reloads();
  net::awaitable<void> shut_down();
  net::awaitable<bool> wait_for_sessions(std::chrono::milliseconds limit);
  void for_each_session(std::function<void(session::session&)> fn);
  void on_health(health::health_view_ptr view);
  void on_route(const router::routing_view_ptr& view);
  void on_switch(const router::switch_record& s, const std::string& who);
  void on_first_served(std::uint64_t epoch);

  // Workers outlive the control loop: an accept pending on it holds a socket of theirs.
  std::vector<std::unique_ptr<worker>> workers;
  net::io_context control{1};
  std::shared_ptr<const config::config> cfg;
  metrics::metrics metrics;
  router::router router;
  proxy_context ctx;
  listener::listener listener;
  // Declared after the router: it is destroyed (and its thread joined) first, so it never
  // reports to a router that is gone.
  health::checker checker;
  admin::operator_actions operators;
  admin::admin_server admin;
  bool stop_now = false;  // a second signal: skip the wait for sessions

  // Failover timing, on the control thread: when the switch that began each epoch was set
  // off (the first failed probe of the backend lost, or the operator's request), kept until
  // the first session is served under that epoch.
  std::map<std::uint64_t, std::chrono::steady_clock::time_point> switch_began;
  std::optional<std::chrono::steady_clock::time_point> outage_began;  // nothing active since
};

server::server(config::config cfg) {
  check_supported(cfg);
  impl_ = std::make_unique<impl>(std::move(cfg));
}
server::~server() = default;

int server::run() {
  auto& m = *impl_;
  raise_file_limit(m.cfg->proxy.max_client_connections);
  for (unsigned i = 0; i < m.cfg->proxy.workers; ++i) {
    m.workers.push_back(std::make_unique<worker>(i));
  }
  m.router.subscribe([&m](const router::routing_view_ptr& view) { m.on_route(view); });
  m.router.on_switch(
      [&m](const router::switch_record& s, const std::string& who) { m.on_switch(s, who); });
  m.ctx.report_sign_of_death = [&m](std::size_t index) { m.checker.request_probe(index); };
  m.ctx.on_first_served = [&m](std::uint64_t epoch) {
    net::post(m.control, [&m, epoch] { m.on_first_served(epoch); });
  };
  m.checker.set_probe_observer([&m](const std::string& name, std::chrono::microseconds took,
                                    bool /*alive*/) { m.metrics.observe_probe(name, took); });
  // What can refuse the start (an untrustworthy or unwritable state file, an address in
  // use) comes before any thread does, so that its message reaches the operator.
  m.router.start();
  m.listener.open(m.cfg->proxy);
  m.admin.open();
  for (auto& w : m.workers) {
    w->start();
  }
  m.checker.start();
  m.listener.start();
  m.admin.start();
  net::co_spawn(m.control, m.wait_for_signals(), net::detached);
  net::co_spawn(m.control, m.wait_for_reloads(), net::detached);
  spdlog::info("started workers={} backends={} pool_mode=session", m.workers.size(),
               m.cfg->backends.size());

  m.control.run();
  m.admin.close();
  m.checker.stop();
  m.router.stop();
  for (auto& w : m.workers) {
    w->stop_and_join();
  }
  spdlog::info("stopped");
  return 0;
}

net::awaitable<void> server::impl::wait_for_signals() {
  net::signal_set signals(control, SIGTERM, SIGINT);
  auto [ec, signo] = co_await signals.async_wait(net::as_tuple(net::use_awaitable));
  if (ec) {
    co_return;
  }
  spdlog::info("shutdown_requested signal={} shutdown_timeout_ms={}", signo,
               cfg->proxy.shutdown_timeout.count());
  net::co_spawn(control, shut_down(), net::detached);

  // A second signal cuts the wait for sessions short.
  auto [ec2, signo2] = co_await signals.async_wait(net::as_tuple(net::use_awaitable));
  if (!ec2) {
    spdlog::info("shutdown_hurried signal={}", signo2);
    stop_now = true;
  }
}

// SIGHUP: reread the configuration file, as POST /reload does.
net::awaitable<void> server::impl::wait_for_reloads() {
  net::signal_set signals(control, SIGHUP);
  for (;;) {
    auto [ec, signo] = co_await signals.async_wait(net::as_tuple(net::use_awaitable));
    if (ec) {
      co_return;
    }
    try {
      std::string who = "signal:SIGHUP";
      auto outcome = co_await operators.reload_file(std::move(who));
      if (!outcome.is_applied) {
        spdlog::error("reload_failed who=signal:SIGHUP issues={} note={:?}", outcome.issues.size(),
                      "the running configuration stays");
      }
    } catch (const std::exception& e) {
      spdlog::error("reload_failed who=signal:SIGHUP error={:?}", e.what());
    }
  }
}

void server::impl::on_health(health::health_view_ptr view) {
  for (const auto& h : view->backends) {
    metrics.set_backend_health(h.name, h.state, h.role);
  }
  router.on_health(std::move(view));
}

// On the control strand: every publication wakes the sessions waiting for a backend (on
// their own threads) and updates the routing gauges.
void server::impl::on_route(const router::routing_view_ptr& view) {
  for (auto& w : workers) {
    net::post(w->io(), [&w, view] { w->on_route_changed(view); });
  }
  const auto* active = view->active_backend();
  metrics.set_active_backend(active ? std::optional<std::string_view>(active->name) : std::nullopt);
  metrics.set_epoch(view->epoch);
  metrics.set_paused(view->paused);
  for (const auto& b : view->backends) {
    metrics.set_backend_routing(b.name, b.fenced, b.disabled);
  }
}

void server::impl::on_switch(const router::switch_record& s, const std::string& who) {
  metrics.count_failover(s.from.value_or("none"), s.to.value_or("none"), s.reason);
  // When did the trouble begin? A lost backend: its first failed probe. An operator's
  // move: the request. A switch out of "nothing active": when that began.
  std::optional<std::chrono::steady_clock::time_point> began;
  if (auto planned = operators.planned_since(); planned && who != "router") {
    began = planned;
  } else if (s.from) {
    auto health = checker.current();
    for (const auto& h : health->backends) {
      if (h.name == *s.from && h.consecutive_failures > 0 &&
          h.failing_since != std::chrono::steady_clock::time_point{}) {
        began = h.failing_since;
      }
    }
  } else if (outage_began) {
    began = outage_began;
  }
  if (!s.to) {
    outage_began = began.value_or(std::chrono::steady_clock::now());
    return;
  }
  outage_began.reset();
  if (began) {
    switch_began[s.epoch] = *began;
  }
}

void server::impl::on_first_served(std::uint64_t epoch) {
  auto it = switch_began.find(epoch);
  if (it != switch_began.end()) {
    metrics.observe_failover_duration(std::chrono::steady_clock::now() - it->second);
  }
  switch_began.erase(switch_began.begin(), switch_began.upper_bound(epoch));
}

void server::impl::for_each_session(std::function<void(session::session&)> fn) {
  for (auto& w : workers) {
    net::post(w->io(), [&w, fn] { w->for_each_session(fn); });
  }
}

net::awaitable<bool> server::impl::wait_for_sessions(std::chrono::milliseconds limit) {
  net::steady_timer tick(control);
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (ctx.client_count.load() > 0 && std::chrono::steady_clock::now() < deadline && !stop_now) {
    tick.expires_after(20ms);
    co_await tick.async_wait(net::as_tuple(net::use_awaitable));
  }
  co_return ctx.client_count.load() == 0;
}

net::awaitable<void> server::impl::shut_down() {
  ctx.shutting_down = true;
  listener.close();

  if (!co_await wait_for_sessions(cfg->proxy.shutdown_timeout)) {
    spdlog::info("shutdown_closing_sessions clients={}", ctx.client_count.load());
    for_each_session([](session::session& s) {
      s.terminate(protocol::sqlstate::admin_shutdown,
                  "terminating connection due to administrator command");
    });
    stop_now = false;
    if (!co_await wait_for_sessions(2s)) {
      // Clients that do not read their error are cut off.
      for_each_session([](session::session& s) { s.abort(); });
      co_await wait_for_sessions(1s);
    }
  }
  control.stop();
}

}  // namespace pgf
