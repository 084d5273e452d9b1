// The health checker: probes every backend on a thread of its own, keeps each backend's
// state machine, and publishes the result as an immutable health view.
//
// Threads: the checker owns a std::thread running a private io_context; every probe, every
// libpq call and every on_change call happens there, so proxy workers never run libpq.
// The public functions are safe to call from any thread.
//
// Scheduling, per backend: at most one probe in flight. After a successful probe the next
// starts `interval` after the previous one started. After a failed one, while the backend
// is still up, it starts at once, but never sooner than min_probe_gap (20ms) after the
// previous start, so a port that refuses instantly cannot make the checker spin; once the
// backend is down, again after `interval`. request_probe() starts one now under the
// min_probe_gap rule.
//
// Publishing: every probe outcome publishes a new view (so latency and counters in
// current() stay fresh). on_change is called only when something routing depends on
// changed: the backend list, a state, role, read_only, ready, or first_round_complete.
//
// current() is a load of a std::atomic<std::shared_ptr<const health_view>>. libstdc++
// implements it with a spin bit held only around the reference-count increment, so
// readers never wait for a mutex, a probe or the callback.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "health/check_settings.hpp"
#include "health/health_view.hpp"
#include "health/probe.hpp"
#include "health/probe_target.hpp"
#include "health/state_machine.hpp"

namespace pgf::health {

class checker {
 public:
  // Called on the checker's thread; must not block (hand the view to the router and
  // return). It must not call stop().
  using change_handler = std::function<void(health_view_ptr)>;
  // Called on the checker's thread after every probe with the backend's name, how long the
  // probe took (connect included) and whether it succeeded; for metrics. Must not block.
  using probe_observer =
      std::function<void(const std::string& name, std::chrono::microseconds took, bool alive)>;

  // Nothing runs before start(); current() already shows every backend as unknown.
  checker(std::vector<probe_target> targets, check_settings settings, change_handler on_change);
  ~checker();  // stop()

  checker(const checker&) = delete;
  checker& operator=(const checker&) = delete;

  // Call before start().
  void set_probe_observer(probe_observer observer) { on_probe_ = std::move(observer); }

  // Starts the thread and the first probe of every backend at once. Call once.
  void start();

  // Interrupts the probes in flight, closes every check connection and joins the thread.
  // Idempotent, but not to be called from two threads at once; the last view stays
  // readable through current().
  // Limitation: a host name lookup abandoned by a timeout keeps running in Asio's resolver
  // thread, since getaddrinfo cannot be interrupted; destroying the checker waits for it.
  void stop();

  health_view_ptr current() const { return view_.load(std::memory_order_acquire); }

  // A sign of death seen on the data path: probe backend `index` (its position in the
  // latest target list) now, over a fresh check connection, unless a probe of it is in
  // flight. Out of range is ignored. `fall` still counts: one sign never downs a backend.
  void request_probe(std::size_t index);

  // A reload. A backend whose name and address (host, port) stay keeps its state and its
  // check connection (reopened if the login changed); others start afresh as unknown;
  // removed ones have their probe interrupted and their connection closed.
  // first_round_complete, once true, stays true: it describes the start, not a reload.
  void update_targets(std::vector<probe_target> targets);

  // A reload of the thresholds and timing; applies from each backend's next probe.
  void update_settings(check_settings settings);

 private:
  struct slot {
    slot(boost::asio::any_io_executor executor, probe_target target,
         const check_settings& settings);

    std::shared_ptr<probe> prober;
    state_machine machine;
    boost::asio::steady_timer wake;  // the wait between probes; cancelled to probe sooner
    clock::time_point last_start{};
    clock::time_point next_start{};
    bool is_in_flight = false;
    bool is_removed = false;
  };
  using slot_ptr = std::shared_ptr<slot>;

  // The routing-relevant part of a view, to tell when on_change is due.
  struct routing_key {
    std::string name;
    backend_state state;
    backend_role role;
    bool read_only;
    bool ready;
    bool operator==(const routing_key&) const = default;
  };

  slot_ptr make_slot(probe_target target);
  void spawn(const slot_ptr& s);
  boost::asio::awaitable<void> probe_backend(slot_ptr s);
  boost::asio::awaitable<void> wait_for_turn(slot& s);
  void record(slot& s, const probe_outcome& outcome);
  void log_change(const backend_health& before, const backend_health& after) const;
  void publish();
  void apply_targets(std::vector<probe_target> targets);
  void apply_settings(const check_settings& settings);
  void wake_for_probe(std::size_t index);
  void begin_stop();
  void on_loop_finished();
  bool is_finished(const slot& s) const { return s.is_removed || is_stopping_; }

  // Declared first so that it outlives every timer, socket and probe below it.
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;

  // Owned by the checker's thread once start() ran.
  check_settings settings_;
  change_handler on_change_;
  probe_observer on_probe_;
  std::vector<slot_ptr> slots_;
  std::size_t running_loops_ = 0;
  bool is_started_ = false;
  bool is_stopping_ = false;
  bool first_round_complete_ = false;
  std::uint64_t generation_ = 0;
  std::optional<std::vector<routing_key>> notified_;  // what on_change last saw
  bool notified_first_round_ = false;

  std::atomic<health_view_ptr> view_;
};

}  // namespace pgf::health
