// Operator actions: status and events as JSON, the planned-move drain, pause, reload.
#include "proxy/admin/operator_actions.hpp"

#include <algorithm>
#include <set>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include "proxy/router/probe_targets.hpp"

namespace pgf::admin {

namespace net = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

// An action refused after its checks began; answered 409.
struct refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// How often a drain counts the sessions still on the old backend.
constexpr auto drain_poll = 10ms;

json::value name_or_null(const std::optional<std::string>& name) {
  return name ? json::value(*name) : json::value(nullptr);
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()) % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                     std::chrono::time_point_cast<std::chrono::seconds>(t), ms.count());
}

std::string endpoint_of(const config::backend_config& b) {
  if (b.endpoint.host.starts_with('/')) {
    return fmt::format("{}/.s.PGSQL.{}", b.endpoint.host, b.endpoint.port);
  }
  if (b.endpoint.host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", b.endpoint.host, b.endpoint.port);
  }
  return fmt::format("{}:{}", b.endpoint.host, b.endpoint.port);
}

const health::backend_health* find_health(const health::health_view& view, std::string_view name) {
  for (const auto& h : view.backends) {
    if (h.name == name) {
      return &h;
    }
  }
  return nullptr;
}

// A router answer as the admin API's, with the epoch and active backend after the call.
action_result from_router(const router::action_result& r, json::object detail = {}) {
  if (!r.is_ok) {
    detail = {};  // a refusal carries the state it left, not the action's figures
  }
  detail["epoch"] = r.epoch;
  detail["active"] = name_or_null(r.active);
  if (r.is_ok) {
    return action_result::ok(std::move(detail));
  }
  int status = 409;
  if (r.failure == router::action_failure::unknown_backend) {
    status = 404;
  } else if (r.failure == router::action_failure::write_failed) {
    status = 500;
  }
  return action_result::failure(status, r.error, std::move(detail));
}

action_result from_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return action_result::failure(500, fmt::format("internal error: {}", ex.what()));
  }
}

// Settings the running proxy cannot take over without a restart: the new file's values are
// replaced by the running ones (so that /status and the next reload tell the truth) and the
// keys are named.
std::vector<std::string> keep_restart_settings(const config::config& running,
                                               config::config& next) {
  std::vector<std::string> changed;
  auto keep = [&changed](const char* key, auto& next_value, const auto& running_value) {
    if (next_value != running_value) {
      changed.emplace_back(key);
      next_value = running_value;
    }
  };
  keep("proxy.listen", next.proxy.listen, running.proxy.listen);
  keep("proxy.unix_socket_dir", next.proxy.unix_socket_dir, running.proxy.unix_socket_dir);
  keep("proxy.workers", next.proxy.workers, running.proxy.workers);
  keep("proxy.pool_mode", next.proxy.mode, running.proxy.mode);
  keep("proxy.auth", next.proxy.auth, running.proxy.auth);
  keep("proxy.state_file", next.proxy.state_file, running.proxy.state_file);
  keep("admin.listen", next.admin.listen, running.admin.listen);
  keep("admin.token", next.admin.token, running.admin.token);
  keep("tls.cert", next.tls.cert, running.tls.cert);
  keep("tls.key", next.tls.key, running.tls.key);
  keep("tls.ca", next.tls.ca, running.tls.ca);
  keep("tls.client_tls", next.tls.client_tls, running.tls.client_tls);
  return changed;
}

json::array to_array(const std::vector<std::string>& items) {
  json::array out;
  for (const auto& item : items) {
    out.emplace_back(item);
  }
  return out;
}

}  // namespace

operator_actions::operator_actions(operator_parts parts) : parts_(std::move(parts)) {}

// ---- reading ----

net::awaitable<server_census> operator_actions::census() {
  server_census total;
  for (const auto& w : parts_.workers) {
    auto* target = w.get();
    auto part = co_await net::co_spawn(
        target->io(), [target]() -> net::awaitable<server_census> { co_return target->census(); },
        net::use_awaitable);
    total.add(part);
  }
  co_return total;
}

net::awaitable<json::value> operator_actions::status() {
  auto counted = co_await census();
  auto view = parts_.router.view();
  auto health = parts_.checker.current();
  const auto& cfg = *view->cfg;
  auto now = steady::now();

  json::array backends;
  json::array fenced;
  json::array disabled;
  for (std::size_t i = 0; i < view->backends.size(); ++i) {
    const auto& route = view->backends[i];
    const auto& b = cfg.backends[i];
    const auto* h = health ? find_health(*health, route.name) : nullptr;
    json::object entry;
    entry["name"] = route.name;
    entry["priority"] = b.priority;
    entry["address"] = endpoint_of(b);
    entry["state"] = h ? health::to_string(h->state) : "unknown";
    entry["role"] = h ? health::to_string(h->role) : "unknown";
    entry["read_only"] = h && h->read_only;
    entry["ready"] = !h || h->ready;
    entry["latency_ms"] = h ? static_cast<double>(h->latency.count()) / 1000.0 : 0.0;
    entry["seconds_in_state"] = h ? std::chrono::duration<double>(now - h->since).count() : 0.0;
    entry["consecutive_failures"] = h ? h->consecutive_failures : 0;
    entry["probes"] = h ? h->probes : 0;
    entry["failed_probes"] = h ? h->failed_probes : 0;
    entry["last_error"] = h ? h->last_error : std::string();
    entry["active"] = view->active == i;
    entry["eligible"] = route.eligible;
    entry["fenced"] = route.fenced;
    entry["disabled"] = route.disabled;
    entry["route_status"] = router::to_string(route.status);
    entry["why_not"] = route.why_not;
    server_census::counts connections{};
    if (auto it = counted.backends.find(route.name); it != counted.backends.end()) {
      connections = it->second;
    }
    json::object servers;
    for (std::size_t s = 0; s < connections.size(); ++s) {
      servers[metrics::to_string(static_cast<metrics::server_state>(s))] = connections[s];
    }
    entry["server_connections"] = std::move(servers);
    backends.emplace_back(std::move(entry));
    if (route.fenced) {
      fenced.emplace_back(route.name);
    }
    if (route.disabled) {
      disabled.emplace_back(route.name);
    }
  }

  json::object out;
  const auto* active = view->active_backend();
  out["active"] = active ? json::value(active->name) : json::value(nullptr);
  out["epoch"] = view->epoch;
  out["deciding"] = view->deciding;
  out["paused"] = view->paused;
  out["pause_reason"] = view->pause_reason;
  out["moving"] = name_or_null(moving_);
  out["last_switch"] =
      json::object{{"reason", view->switch_reason}, {"detail", view->switch_detail}};
  out["fenced"] = std::move(fenced);
  out["disabled"] = std::move(disabled);
  out["clients"] = counted.clients;
  out["backends"] = std::move(backends);
  co_return out;
}

json::value operator_actions::events() {
  json::array list;
  for (const auto& e : parts_.router.events()) {
    json::object entry;
    entry["time"] = rfc3339(e.time);
    entry["kind"] = router::to_string(e.kind);
    entry["backend"] = e.backend.empty() ? json::value(nullptr) : json::value(e.backend);
    entry["from"] = name_or_null(e.from);
    entry["to"] = name_or_null(e.to);
    entry["epoch"] = e.epoch;
    entry["reason"] = e.reason;
    entry["who"] = e.who;
    list.emplace_back(std::move(entry));
  }
  return json::object{{"events", std::move(list)}};
}

bool operator_actions::ready() {
  auto view = parts_.router.view();
  bool is_shutting_down = parts_.is_shutting_down && parts_.is_shutting_down();
  return view->active.has_value() && !view->deciding && !is_shutting_down;
}

net::awaitable<void> operator_actions::refresh_metrics() {
  auto counted = co_await census();
  parts_.metrics.set_server_connections(counted.backends);
  const auto& c = parts_.router.counters();
  parts_.metrics.fold_hook_runs({c.hooks_ok.load(), c.hooks_failed.load(), c.hooks_timeout.load()});
}

// ---- planned moves ----

std::optional<action_result> operator_actions::refuse_if_moving(const std::string& action,
                                                                const std::string& who) const {
  if (!moving_) {
    return std::nullopt;
  }
  auto error = fmt::format("{} is under way; try again after it", *moving_);
  parts_.router.note_operator("", fmt::format("{} refused: {}", action, error), who);
  return action_result::failure(409, error);
}

net::awaitable<std::uint32_t> operator_actions::count_attached(
    const std::function<bool(std::string_view)>& is_old) {
  auto counted = co_await census();
  std::uint32_t total = 0;
  for (const auto& [name, counts] : counted.backends) {
    if (is_old(name)) {
      for (auto n : counts) {
        total += n;
      }
    }
  }
  co_return total;
}

net::awaitable<operator_actions::drain_result> operator_actions::hold_and_drain(
    std::optional<std::string> target, std::function<bool(std::string_view)> is_old,
    std::string why) {
  auto begin = steady::now();
  auto [e, held] = co_await parts_.router.async_hold(true, std::move(why), target, use_tuple);
  if (e) {
    std::rethrow_exception(e);
  }
  // Read after the hold is published, so the sessions can no longer be routed anywhere.
  auto limit = parts_.router.view()->cfg->failover.drain_timeout;
  net::steady_timer tick(parts_.control);
  drain_result result;
  for (;;) {
    auto left = co_await count_attached(is_old);
    result.left = left;
    auto now = steady::now();
    // The target stopped being eligible (or was removed): the switch will be refused, so
    // waiting longer only holds traffic.
    auto current = parts_.router.view();
    bool is_target_lost =
        target && (!current->staged || current->backends[*current->staged].name != *target);
    if (is_target_lost) {
      result.took = std::chrono::duration_cast<std::chrono::milliseconds>(now - begin);
      co_return result;
    }
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(now - begin);
    if (result.left == 0 || now >= begin + limit) {
      co_return result;
    }
    tick.expires_after(std::min<steady::duration>(drain_poll, begin + limit - now));
    co_await tick.async_wait(use_tuple);
  }
}

net::awaitable<void> operator_actions::settle_workers() {
  // The switch's routing view was posted to every worker before this census is: once it
  // returns, each worker has acted on the switch (sessions left on the old backend stopped).
  co_await census();
}

net::awaitable<void> operator_actions::release_hold() {
  std::string none;
  std::optional<std::string> no_target;
  auto [e, r] =
      co_await parts_.router.async_hold(false, std::move(none), std::move(no_target), use_tuple);
  if (e) {
    // Nothing to answer to: the action's own result stands. Logged, since traffic would
    // stay held.
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("hold_release_failed error={:?}", ex.what());
    }
  }
}

net::awaitable<action_result> operator_actions::switchover(std::string to, bool force,
                                                           std::string reason, std::string who) {
  if (auto refused = refuse_if_moving(fmt::format("switchover to {}", to), who)) {
    co_return *refused;
  }
  // Checked before holding anyone: a switchover that cannot happen must not pause traffic.
  // The router checks again after the drain, when it decides.
  auto view = parts_.router.view();
  const router::backend_route_state* target = nullptr;
  for (const auto& b : view->backends) {
    if (b.name == to) {
      target = &b;
    }
  }
  std::optional<action_result> refusal;
  const auto* active = view->active_backend();
  bool is_clean = target != nullptr && (target->status == router::route_status::eligible ||
                                        target->status == router::route_status::fenced);
  if (target == nullptr) {
    refusal = action_result::failure(404, fmt::format("no backend is named \"{}\"", to));
  } else if (active != nullptr && active->name == to) {
    refusal = action_result::failure(409, fmt::format("{} is already the active backend", to));
  } else if (view->deciding) {
    refusal = action_result::failure(
        409, fmt::format("{} is not eligible: the router has not chosen a backend yet", to));
  } else if (!is_clean) {
    refusal =
        action_result::failure(409, fmt::format("{} is not eligible: {}", to, target->why_not));
  }
  if (refusal) {
    parts_.router.note_operator(to, fmt::format("switchover to {} refused: {}", to, refusal->error),
                                who);
    co_return *refusal;
  }

  moving_ = fmt::format("a switchover to {}", to);
  planned_since_ = steady::now();
  drain_result drained;
  bool is_held = false;
  std::exception_ptr failure;
  router::action_result answer;
  try {
    std::function<bool(std::string_view)> is_old = [&to](std::string_view name) {
      return name != to;
    };
    if (force) {
      auto left = co_await count_attached(is_old);
      drained.left = left;
    } else {
      is_held = true;
      auto why = fmt::format("a switchover to {} is in progress", to);
      std::optional<std::string> target = to;
      auto result = co_await hold_and_drain(std::move(target), std::move(is_old), std::move(why));
      drained = result;
    }
    router::switchover_request request{
        .to = to, .reason = reason, .force = force, .who = who, .drained = true};
    auto [e, r] = co_await parts_.router.async_switchover(std::move(request), use_tuple);
    failure = e;
    answer = std::move(r);
  } catch (...) {
    failure = std::current_exception();
  }
  if (is_held) {
    co_await release_hold();
  }
  if (!failure && answer.is_ok) {
    co_await settle_workers();
  }
  moving_.reset();
  planned_since_.reset();
  if (failure) {
    co_return from_exception(failure);
  }

  spdlog::info("switchover_drained to={} force={} drain_ms={} sessions_left={} epoch={} result={}",
               to, force, drained.took.count(), drained.left, answer.epoch,
               answer.is_ok ? "ok" : "refused");
  co_return from_router(
      answer,
      {{"drain_ms", drained.took.count()}, {"closed_sessions", drained.left}, {"forced", force}});
}

net::awaitable<action_result> operator_actions::disable(std::string name, bool force,
                                                        std::string reason, std::string who) {
  if (auto refused = refuse_if_moving(fmt::format("disable {}", name), who)) {
    co_return *refused;
  }
  auto view = parts_.router.view();
  const auto* active = view->active_backend();
  bool is_active = active != nullptr && active->name == name;

  moving_ = fmt::format("disabling {}", name);
  planned_since_ = steady::now();
  drain_result drained;
  bool is_held = false;
  std::optional<std::string> refused;
  std::exception_ptr failure;
  router::action_result answer;
  try {
    // Taking the active backend out is a planned move like a switchover: its sessions get
    // drain_timeout before the router picks the next backend.
    std::function<bool(std::string_view)> is_old = [&name](std::string_view b) {
      return b == name;
    };
    if (is_active && force) {
      auto left = co_await count_attached(is_old);
      drained.left = left;
    }
    if (is_active && !force) {
      auto why = fmt::format("{} is being disabled", name);
      // Where the router will go: new sessions log in there during the drain.
      std::optional<std::string> target;
      for (const auto& b : view->backends) {
        if (!target && b.name != name && b.status == router::route_status::eligible) {
          target = b.name;
        }
      }
      if (!target) {
        throw refusal(fmt::format(
            "disabling the active backend {} would leave no backend to route to: {}; switch "
            "over to another backend first (a fenced one may be switched to), pause, or "
            "disable with force",
            name, view->unavailable_detail()));
      }
      is_held = true;
      auto result = co_await hold_and_drain(std::move(target), std::move(is_old), std::move(why));
      drained = result;
    }
    router::backend_request request{.name = name, .who = who, .reason = reason, .drained = true};
    auto [e, r] = co_await parts_.router.async_disable(std::move(request), use_tuple);
    failure = e;
    answer = std::move(r);
  } catch (const refusal& r) {
    refused = r.what();
  } catch (...) {
    failure = std::current_exception();
  }
  if (is_active && is_held) {
    co_await release_hold();
  }
  if (!failure && !refused && answer.is_ok) {
    co_await settle_workers();
  }
  moving_.reset();
  planned_since_.reset();
  if (refused) {
    parts_.router.note_operator(name, fmt::format("disable {} refused: {}", name, *refused), who);
    co_return action_result::failure(409, *refused);
  }
  if (failure) {
    co_return from_exception(failure);
  }
  co_return from_router(answer,
                        {{"drain_ms", drained.took.count()}, {"closed_sessions", drained.left}});
}

net::awaitable<action_result> operator_actions::enable(std::string name, std::string reason,
                                                       std::string who) {
  router::backend_request request{.name = name, .who = who, .reason = reason};
  auto [e, r] = co_await parts_.router.async_enable(std::move(request), use_tuple);
  if (e) {
    co_return from_exception(e);
  }
  co_return from_router(r);
}

net::awaitable<action_result> operator_actions::pause(std::string reason, std::string who) {
  router::pause_request request{who, reason};
  auto [e, r] = co_await parts_.router.async_pause(std::move(request), use_tuple);
  if (e) {
    co_return from_exception(e);
  }
  co_return from_router(r, {{"paused", true}, {"changed", r.changed}});
}

net::awaitable<action_result> operator_actions::resume(std::string reason, std::string who) {
  router::pause_request request{who, reason};
  auto [e, r] = co_await parts_.router.async_resume(std::move(request), use_tuple);
  if (e) {
    co_return from_exception(e);
  }
  co_return from_router(r, {{"paused", parts_.router.view()->paused}, {"changed", r.changed}});
}

// ---- reload ----

net::awaitable<reload_outcome> operator_actions::reload_file(std::string who, std::string reason) {
  reload_outcome out;
  config::config next;
  try {
    next = config::load_file(parts_.config_path);
    if (parts_.check_supported) {
      parts_.check_supported(next);
    }
  } catch (const config::config_error& e) {
    for (const auto& issue : e.issues()) {
      out.issues.push_back(issue.to_string());
    }
  } catch (const std::exception& e) {
    out.issues.push_back(fmt::format("{}: {}", parts_.config_path, e.what()));
  }
  if (!out.issues.empty()) {
    for (const auto& issue : out.issues) {
      spdlog::error("reload_refused who={} issue={:?}", who, issue);
    }
    parts_.router.note_operator(
        "",
        fmt::format("reload refused: {} error(s) in {}; the running configuration stays",
                    out.issues.size(), parts_.config_path),
        who);
    co_return out;
  }

  auto running = parts_.router.view()->cfg;
  out.restart_required = keep_restart_settings(*running, next);
  for (const auto& w : next.warnings) {
    out.warnings.push_back(w.to_string());
  }
  auto cfg = std::make_shared<const config::config>(std::move(next));

  // Series for new backends exist before anything reports on them; those of removed
  // backends go once nothing routes to them.
  for (const auto& b : cfg->backends) {
    parts_.metrics.add_backend(b.name);
  }
  router::pause_request request{who, reason};
  auto [e, r] = co_await parts_.router.async_reload(cfg, std::move(request), use_tuple);
  if (e) {
    std::rethrow_exception(e);
  }
  parts_.checker.update_settings(router::check_settings(cfg->health));
  parts_.checker.update_targets(router::probe_targets(*cfg));
  for (const auto& name : parts_.metrics.backend_names()) {
    bool is_kept = std::any_of(cfg->backends.begin(), cfg->backends.end(),
                               [&name](const auto& b) { return b.name == name; });
    if (!is_kept) {
      parts_.metrics.remove_backend(name);
    }
  }

  out.is_applied = true;
  std::vector<std::string> names;
  for (const auto& b : cfg->backends) {
    names.push_back(b.name);
  }
  spdlog::info("reloaded who={} backends={:?} restart_required={:?}", who,
               fmt::format("{}", fmt::join(names, ",")),
               fmt::format("{}", fmt::join(out.restart_required, ",")));
  for (const auto& key : out.restart_required) {
    spdlog::warn("reload_needs_restart key={} note={:?}", key,
                 "changed in the file; the running value stays until a restart");
  }
  for (const auto& w : out.warnings) {
    spdlog::warn("config_warning {}", w);
  }
  co_return out;
}

net::awaitable<action_result> operator_actions::reload(std::string reason, std::string who) {
  auto out = co_await reload_file(std::move(who), std::move(reason));
  if (!out.is_applied) {
    co_return action_result::failure(422, "the configuration file has errors; nothing changed",
                                     {{"issues", to_array(out.issues)}});
  }
  auto view = parts_.router.view();
  json::array backends;
  for (const auto& b : view->cfg->backends) {
    backends.emplace_back(b.name);
  }
  co_return action_result::ok(
      {{"backends", std::move(backends)},
       {"restart_required", to_array(out.restart_required)},
       {"warnings", to_array(out.warnings)},
       {"epoch", view->epoch},
       {"active", view->active_backend() ? json::value(view->active_backend()->name)
                                         : json::value(nullptr)}});
}

}  // namespace pgf::admin
