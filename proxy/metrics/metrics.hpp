// The process's Prometheus registry: every pgfailover_* family, the handles the other parts
// update, and the text served on GET /metrics. Names use base units and end in _total for
// counters; where PgBouncer's exporters count the same thing, the meaning is the same.
//
// Threading contract:
// - worker(i) is worker thread i's own block of data-path counters (worker_counters.hpp):
//   only that thread writes it, without locks. serialize() folds all blocks into the
//   registry, so those values are as fresh as the last scrape.
// - Every other update goes to a prometheus-cpp object and is safe from any thread. Gauge
//   and Counter updates are lock-free atomics; Histogram::Observe takes a short mutex.
//   Handles are created up front (per backend, per hook result, per common SQLSTATE class);
//   the calls whose labels cannot be known in advance (count_failover, count_admin_request,
//   an unusual SQLSTATE class) look the series up under prometheus-cpp's family mutex. All
//   of these are per event (a probe, a switch, a connection, an error), never per message.
// - Per-backend series are reached by name through the set_backend_*/observe_probe calls,
//   which look the backend up under a mutex, so a reload may add and remove backends
//   (add_backend, remove_backend) while the checker thread reports probes. A name that is
//   not (or no longer) known is ignored.
// - Server connections are not counted on the data path at all: set_server_connections()
//   writes a census the control thread takes from the workers before each scrape.
// - serialize() may be called from any thread; concurrent calls take turns on a mutex.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "health/health_view.hpp"
#include "proxy/metrics/worker_counters.hpp"

namespace pgf::metrics {

using seconds = std::chrono::duration<double>;

// A server connection's phase, as counted in pgfailover_server_connections{backend,state}:
// login - being opened or logged in; active - lent to a client; idle - pooled, free.
enum class server_state : std::uint8_t { login, active, idle };
inline constexpr std::size_t server_state_count = 3;

// How an on_switch hook ended, as counted in pgfailover_hook_runs_total{result}.
enum class hook_result : std::uint8_t { ok, failed, timeout };
inline constexpr std::size_t hook_result_count = 3;

const char* to_string(server_state state);
const char* to_string(hook_result result);

inline constexpr std::size_t backend_state_count = 3;  // health::backend_state
inline constexpr std::size_t backend_role_count = 3;   // health::backend_role

// Every family, registered once; defined in metrics.cpp.
struct families;

// The series of one backend. Created by metrics::add_backend(); see the contract above.
class backend_metrics {
 public:
  backend_metrics(const std::string& name, families& f);
  backend_metrics(const backend_metrics&) = delete;
  backend_metrics& operator=(const backend_metrics&) = delete;

  const std::string& name() const { return name_; }

  // Sets backend_up (1 when up), backend_state and backend_role (1 for the current one).
  void set_health(health::backend_state state, health::backend_role role);
  void observe_probe(seconds round_trip) { probe_duration_->Observe(round_trip.count()); }
  void set_active(bool is_active) { active_->Set(is_active ? 1 : 0); }
  void set_fenced(bool is_fenced) { fenced_->Set(is_fenced ? 1 : 0); }
  void set_disabled(bool is_disabled) { disabled_->Set(is_disabled ? 1 : 0); }

  prometheus::Gauge& server_connections(server_state state) {
    return *server_connections_[static_cast<std::size_t>(state)];
  }

 private:
  friend class metrics;
  void remove_from(families& f);

  std::string name_;
  prometheus::Gauge* up_;
  std::array<prometheus::Gauge*, backend_state_count> state_;
  std::array<prometheus::Gauge*, backend_role_count> role_;
  prometheus::Histogram* probe_duration_;
  prometheus::Gauge* active_;
  prometheus::Gauge* fenced_;
  prometheus::Gauge* disabled_;
  std::array<prometheus::Gauge*, server_state_count> server_connections_;
};

class metrics {
 public:
  // `workers` blocks of worker counters; one series set per backend name.
  metrics(unsigned workers, const std::vector<std::string>& backend_names);
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  worker_counters& worker(unsigned index) { return workers_[index]; }
  unsigned worker_count() const { return worker_count_; }

  // Creates the backend's series, or returns the existing ones.
  backend_metrics& add_backend(const std::string& name);
  // Drops the backend's series from the output and frees them.
  void remove_backend(std::string_view name);
  // The backends that have series, in name order.
  std::vector<std::string> backend_names();

  void set_backend_health(std::string_view name, health::backend_state state,
                          health::backend_role role);
  void observe_probe(std::string_view name, seconds round_trip);
  void set_backend_routing(std::string_view name, bool is_fenced, bool is_disabled);
  // Server connections per backend name, [login, active, idle]; a backend missing from
  // `counts` has none.
  void set_server_connections(
      const std::map<std::string, std::array<std::uint32_t, server_state_count>, std::less<>>&
          counts);

  // pgfailover_active_backend{backend}: 1 for `name`, 0 for every other backend.
  void set_active_backend(std::optional<std::string_view> name);
  void set_epoch(std::uint64_t epoch) { epoch_->Set(static_cast<double>(epoch)); }
  void set_paused(bool is_paused) { paused_->Set(is_paused ? 1 : 0); }

  void count_failover(std::string_view from, std::string_view to, std::string_view reason);
  // From the first failed probe to the first transaction served by the new backend.
  void observe_failover_duration(seconds elapsed) { failover_duration_->Observe(elapsed.count()); }
  void count_hook_run(hook_result result) {
    hook_runs_[static_cast<std::size_t>(result)]->Increment();
  }
  // The hook runs counted elsewhere (the router's own counters), as running totals: adds
  // what is new since the last call. Control thread.
  void fold_hook_runs(const std::array<std::uint64_t, hook_result_count>& totals);
  // An ErrorResponse the proxy itself sent to a client, counted by its SQLSTATE's class
  // (the first two characters); a malformed code counts as class "other".
  void count_client_error(std::string_view sqlstate);
  // One admin API request: `path` is the route's pattern ("/backends/{name}/disable", or
  // "other" for unknown paths), never the raw target, so the label set stays small.
  void count_admin_request(std::string_view path, unsigned status_code);

  // Folds the worker counters in, then renders the registry in the Prometheus text format
  // (version 0.0.4).
  std::string serialize();

  prometheus::Registry& registry() { return *registry_; }

 private:
  void fold_worker_counters();

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<families> families_;
  unsigned worker_count_;
  std::unique_ptr<worker_counters[]> workers_;

  prometheus::Gauge* epoch_;
  prometheus::Gauge* paused_;
  prometheus::Histogram* failover_duration_;
  std::array<prometheus::Counter*, hook_result_count> hook_runs_;
  std::array<std::uint64_t, hook_result_count> folded_hook_runs_{};
  std::map<std::string, prometheus::Counter*, std::less<>> common_errors_;

  std::mutex backends_mutex_;
  std::map<std::string, std::unique_ptr<backend_metrics>, std::less<>> backends_;

  // Folding state: the worker totals already added to the registry's counters.
  std::mutex fold_mutex_;
  prometheus::Counter* bytes_received_;
  prometheus::Counter* bytes_sent_;
  prometheus::Counter* clients_accepted_;
  std::array<prometheus::Gauge*, client_state_count> clients_;
  std::uint64_t folded_bytes_received_ = 0;
  std::uint64_t folded_bytes_sent_ = 0;
  std::uint64_t folded_clients_accepted_ = 0;
};

}  // namespace pgf::metrics
