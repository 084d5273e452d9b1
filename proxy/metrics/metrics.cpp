// The pgfailover_* families, their pre-created series and the /metrics text.
#include "proxy/metrics/metrics.hpp"

#include <algorithm>

#include <prometheus/text_serializer.h>

namespace pgf::metrics {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Probes answer in well under a millisecond on a LAN and in tens across providers; the
// top buckets catch a probe that only just beat its timeout.
const prometheus::Histogram::BucketBoundaries probe_buckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

// A crash is seen within milliseconds, a frozen server after fall * timeout, a promotion
// after up to promote_timeout.
const prometheus::Histogram::BucketBoundaries failover_buckets{0.05, 0.1, 0.25, 0.5, 1,  2,
                                                               5,    10,  30,   60,  120};

// The classes of the SQLSTATEs the proxy itself sends: connection exceptions, feature not
// supported, authentication, unknown database, insufficient resources, operator
// intervention, internal error.
constexpr std::array<std::string_view, 7> common_error_classes{"08", "0A", "28", "3D",
                                                               "53", "57", "XX"};

bool is_sqlstate_class(std::string_view text) {
  auto allowed = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'); };
  return text.size() == 2 && allowed(text[0]) && allowed(text[1]);
}

}  // namespace

const char* to_string(client_state state) {
  switch (state) {
    case client_state::login:
      return "login";
    case client_state::active:
      return "active";
    case client_state::waiting:
      return "waiting";
  }
  return "unknown";
}

const char* to_string(server_state state) {
  switch (state) {
    case server_state::login:
      return "login";
    case server_state::active:
      return "active";
    case server_state::idle:
      return "idle";
  }
  return "unknown";
}

const char* to_string(hook_result result) {
  switch (result) {
    case hook_result::ok:
      return "ok";
    case hook_result::failed:
      return "failed";
    case hook_result::timeout:
      return "timeout";
  }
  return "unknown";
}

struct families {
  explicit families(prometheus::Registry& r)
      : backend_up(BuildGauge()
                       .Name("pgfailover_backend_up")
                       .Help("1 when the backend's health checks pass, else 0")
                       .Register(r)),
        backend_state(BuildGauge()
                          .Name("pgfailover_backend_state")
                          .Help("1 for the backend's current health state (unknown, up, down)")
                          .Register(r)),
        backend_role(BuildGauge()
                         .Name("pgfailover_backend_role")
                         .Help("1 for the backend's last seen role (unknown, primary, standby)")
                         .Register(r)),
        backend_fenced(BuildGauge()
                           .Name("pgfailover_backend_fenced")
                           .Help("1 while the router keeps the backend fenced after a switch")
                           .Register(r)),
        backend_disabled(BuildGauge()
                             .Name("pgfailover_backend_disabled")
                             .Help("1 while an operator has taken the backend out of routing")
                             .Register(r)),
        probe_duration(BuildHistogram()
                           .Name("pgfailover_probe_duration_seconds")
                           .Help("Round trip of each health probe, successful or not")
                           .Register(r)),
        active_backend(BuildGauge()
                           .Name("pgfailover_active_backend")
                           .Help("1 for the backend that receives new work, else 0")
                           .Register(r)),
        epoch(BuildGauge()
                  .Name("pgfailover_epoch")
                  .Help("Routing epoch; grows by one with every switch of the active backend")
                  .Register(r)),
        failovers(BuildCounter()
                      .Name("pgfailover_failovers_total")
                      .Help("Switches of the active backend, by old and new backend and reason")
                      .Register(r)),
        failover_duration(BuildHistogram()
                              .Name("pgfailover_failover_duration_seconds")
                              .Help("From the first failed probe to the first transaction "
                                    "served by the new backend")
                              .Register(r)),
        client_connections(BuildGauge()
                               .Name("pgfailover_client_connections")
                               .Help("Client connections now, by state (login, active, waiting)")
                               .Register(r)),
        server_connections(BuildGauge()
                               .Name("pgfailover_server_connections")
                               .Help("Server connections now, by backend and state (login, "
                                     "active, idle)")
                               .Register(r)),
        clients_accepted(BuildCounter()
                             .Name("pgfailover_client_connections_total")
                             .Help("Client connections accepted since start")
                             .Register(r)),
        bytes_received(BuildCounter()
                           .Name("pgfailover_received_bytes_total")
                           .Help("Bytes received from clients")
                           .Register(r)),
        bytes_sent(BuildCounter()
                       .Name("pgfailover_sent_bytes_total")
                       .Help("Bytes sent to clients")
                       .Register(r)),
        errors(BuildCounter()
                   .Name("pgfailover_errors_total")
                   .Help("ErrorResponses the proxy itself sent to clients, by SQLSTATE class")
                   .Register(r)),
        hook_runs(BuildCounter()
                      .Name("pgfailover_hook_runs_total")
                      .Help("Runs of the on_switch hook, by result (ok, failed, timeout)")
                      .Register(r)),
        admin_requests(BuildCounter()
                           .Name("pgfailover_admin_requests_total")
                           .Help("Admin API requests, by route and HTTP status code")
                           .Register(r)),
        paused(BuildGauge()
                   .Name("pgfailover_paused")
                   .Help("1 while new transactions are held by a pause or a switchover")
                   .Register(r)) {}

  prometheus::Family<prometheus::Gauge>& backend_up;
  prometheus::Family<prometheus::Gauge>& backend_state;
  prometheus::Family<prometheus::Gauge>& backend_role;
  prometheus::Family<prometheus::Gauge>& backend_fenced;
  prometheus::Family<prometheus::Gauge>& backend_disabled;
  prometheus::Family<prometheus::Histogram>& probe_duration;
  prometheus::Family<prometheus::Gauge>& active_backend;
  prometheus::Family<prometheus::Gauge>& epoch;
  prometheus::Family<prometheus::Counter>& failovers;
  prometheus::Family<prometheus::Histogram>& failover_duration;
  prometheus::Family<prometheus::Gauge>& client_connections;
  prometheus::Family<prometheus::Gauge>& server_connections;
  prometheus::Family<prometheus::Counter>& clients_accepted;
  prometheus::Family<prometheus::Counter>& bytes_received;
  prometheus::Family<prometheus::Counter>& bytes_sent;
  prometheus::Family<prometheus::Counter>& errors;
  prometheus::Family<prometheus::Counter>& hook_runs;
  prometheus::Family<prometheus::Counter>& admin_requests;
  prometheus::Family<prometheus::Gauge>& paused;
};

backend_metrics::backend_metrics(const std::string& name, families& f) : name_(name) {
  const prometheus::Labels labels{{"backend", name}};
  up_ = &f.backend_up.Add(labels);
  for (std::size_t i = 0; i < backend_state_count; ++i) {
    auto state = health::to_string(static_cast<health::backend_state>(i));
    state_[i] = &f.backend_state.Add({{"backend", name}, {"state", state}});
  }
  for (std::size_t i = 0; i < backend_role_count; ++i) {
    auto role = health::to_string(static_cast<health::backend_role>(i));
    role_[i] = &f.backend_role.Add({{"backend", name}, {"role", role}});
  }
  probe_duration_ = &f.probe_duration.Add(labels, probe_buckets);
  active_ = &f.active_backend.Add(labels);
  fenced_ = &f.backend_fenced.Add(labels);
  disabled_ = &f.backend_disabled.Add(labels);
  for (std::size_t i = 0; i < server_state_count; ++i) {
    auto state = to_string(static_cast<server_state>(i));
    server_connections_[i] = &f.server_connections.Add({{"backend", name}, {"state", state}});
  }
  set_health(health::backend_state::unknown, health::backend_role::unknown);
}

void backend_metrics::set_health(health::backend_state state, health::backend_role role) {
  up_->Set(state == health::backend_state::up ? 1 : 0);
  for (std::size_t i = 0; i < backend_state_count; ++i) {
    state_[i]->Set(i == static_cast<std::size_t>(state) ? 1 : 0);
  }
  for (std::size_t i = 0; i < backend_role_count; ++i) {
    role_[i]->Set(i == static_cast<std::size_t>(role) ? 1 : 0);
  }
}

void backend_metrics::remove_from(families& f) {
  f.backend_up.Remove(up_);
  for (auto* gauge : state_) {
    f.backend_state.Remove(gauge);
  }
  for (auto* gauge : role_) {
    f.backend_role.Remove(gauge);
  }
  f.probe_duration.Remove(probe_duration_);
  f.active_backend.Remove(active_);
  f.backend_fenced.Remove(fenced_);
  f.backend_disabled.Remove(disabled_);
  for (auto* gauge : server_connections_) {
    f.server_connections.Remove(gauge);
  }
}

metrics::metrics(unsigned workers, const std::vector<std::string>& backend_names)
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<families>(*registry_)),
      worker_count_(workers),
      workers_(std::make_unique<worker_counters[]>(workers)) {
  auto& f = *families_;
  epoch_ = &f.epoch.Add({});
  paused_ = &f.paused.Add({});
  failover_duration_ = &f.failover_duration.Add({}, failover_buckets);
  for (std::size_t i = 0; i < hook_result_count; ++i) {
    hook_runs_[i] = &f.hook_runs.Add({{"result", to_string(static_cast<hook_result>(i))}});
  }
  for (auto cls : common_error_classes) {
    common_errors_.emplace(std::string(cls), &f.errors.Add({{"sqlstate_class", std::string(cls)}}));
  }

  bytes_received_ = &f.bytes_received.Add({});
  bytes_sent_ = &f.bytes_sent.Add({});
  clients_accepted_ = &f.clients_accepted.Add({});
  for (std::size_t i = 0; i < client_state_count; ++i) {
    clients_[i] = &f.client_connections.Add({{"state", to_string(static_cast<client_state>(i))}});
  }

  for (const auto& name : backend_names) {
    add_backend(name);
  }
}

metrics::~metrics() = default;

backend_metrics& metrics::add_backend(const std::string& name) {
  std::lock_guard lock(backends_mutex_);
  auto it = backends_.find(name);
  if (it == backends_.end()) {
    it = backends_.emplace(name, std::make_unique<backend_metrics>(name, *families_)).first;
  }
  return *it->second;
}

std::vector<std::string> metrics::backend_names() {
  std::lock_guard lock(backends_mutex_);
  std::vector<std::string> out;
  for (const auto& [name, series] : backends_) {
    out.push_back(name);
  }
  return out;
}

void metrics::set_backend_health(std::string_view name, health::backend_state state,
                                 health::backend_role role) {
  std::lock_guard lock(backends_mutex_);
  if (auto it = backends_.find(name); it != backends_.end()) {
    it->second->set_health(state, role);
  }
}

void metrics::observe_probe(std::string_view name, seconds round_trip) {
  std::lock_guard lock(backends_mutex_);
  if (auto it = backends_.find(name); it != backends_.end()) {
    it->second->observe_probe(round_trip);
  }
}

void metrics::set_backend_routing(std::string_view name, bool is_fenced, bool is_disabled) {
  std::lock_guard lock(backends_mutex_);
  if (auto it = backends_.find(name); it != backends_.end()) {
    it->second->set_fenced(is_fenced);
    it->second->set_disabled(is_disabled);
  }
}

void metrics::set_server_connections(
    const std::map<std::string, std::array<std::uint32_t, server_state_count>, std::less<>>&
        counts) {
  std::lock_guard lock(backends_mutex_);
  for (auto& [name, series] : backends_) {
    auto it = counts.find(name);
    for (std::size_t i = 0; i < server_state_count; ++i) {
      auto n = it == counts.end() ? 0u : it->second[i];
      series->server_connections(static_cast<server_state>(i)).Set(n);
    }
  }
}

void metrics::fold_hook_runs(const std::array<std::uint64_t, hook_result_count>& totals) {
  for (std::size_t i = 0; i < hook_result_count; ++i) {
    if (totals[i] > folded_hook_runs_[i]) {
      hook_runs_[i]->Increment(static_cast<double>(totals[i] - folded_hook_runs_[i]));
      folded_hook_runs_[i] = totals[i];
    }
  }
}

void metrics::remove_backend(std::string_view name) {
  std::lock_guard lock(backends_mutex_);
  auto it = backends_.find(name);
  if (it == backends_.end()) {
    return;
  }
  it->second->remove_from(*families_);
  backends_.erase(it);
}

void metrics::set_active_backend(std::optional<std::string_view> name) {
  std::lock_guard lock(backends_mutex_);
  for (auto& [backend_name, series] : backends_) {
    series->set_active(name && *name == backend_name);
  }
}

void metrics::count_failover(std::string_view from, std::string_view to, std::string_view reason) {
  families_->failovers
      .Add({{"from", std::string(from)}, {"to", std::string(to)}, {"reason", std::string(reason)}})
      .Increment();
}

void metrics::count_client_error(std::string_view sqlstate) {
  auto cls = sqlstate.substr(0, 2);
  if (sqlstate.size() != 5 || !is_sqlstate_class(cls)) {
    cls = "other";
  }
  if (auto it = common_errors_.find(cls); it != common_errors_.end()) {
    it->second->Increment();
    return;
  }
  families_->errors.Add({{"sqlstate_class", std::string(cls)}}).Increment();
}

void metrics::count_admin_request(std::string_view path, unsigned status_code) {
  families_->admin_requests
      .Add({{"path", std::string(path)}, {"code", std::to_string(status_code)}})
      .Increment();
}

void metrics::fold_worker_counters() {
  std::uint64_t received = 0;
  std::uint64_t sent = 0;
  std::uint64_t accepted = 0;
  std::array<std::int64_t, client_state_count> clients{};
  for (unsigned i = 0; i < worker_count_; ++i) {
    const auto& w = workers_[i];
    received += w.bytes_received();
    sent += w.bytes_sent();
    accepted += w.clients_accepted();
    for (std::size_t s = 0; s < client_state_count; ++s) {
      clients[s] += w.clients(static_cast<client_state>(s));
    }
  }

  // Each block only grows, so the sums do too, and the difference is what is new.
  bytes_received_->Increment(static_cast<double>(received - folded_bytes_received_));
  bytes_sent_->Increment(static_cast<double>(sent - folded_bytes_sent_));
  clients_accepted_->Increment(static_cast<double>(accepted - folded_clients_accepted_));
  folded_bytes_received_ = received;
  folded_bytes_sent_ = sent;
  folded_clients_accepted_ = accepted;

  for (std::size_t s = 0; s < client_state_count; ++s) {
    // Blocks are read one after another while sessions move between phases, so a sum can
    // be off by a client for one scrape; it is never shown below zero.
    clients_[s]->Set(static_cast<double>(std::max<std::int64_t>(clients[s], 0)));
  }
}

std::string metrics::serialize() {
  std::lock_guard lock(fold_mutex_);
  fold_worker_counters();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace pgf::metrics
