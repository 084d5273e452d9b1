// The router: turns the health view, the configuration and operator actions into the
// active backend and an epoch (see policy.hpp for the rules), persists the decision in the
// state file before it takes effect, and publishes it as an immutable routing_view.
//
// Threads and executors:
// - Every decision runs on a strand of the control io_context, one at a time. on_health()
//   and the async_* operator calls may be made from any thread; they post there.
// - start() must be called on the control thread or before the control context runs.
// - view() may be called from any thread and takes no lock once the calling thread has
//   seen the current generation; publication takes a mutex and is rare. Subscribers run
//   on the control strand and must only post work elsewhere.
// - on_switch hooks and promotions run on two threads of the router's own; their results
//   go to the log, the event buffer and counters(), never back into routing.
// Lifetime: the control io_context must outlive the router, and the health checker must
// stop calling on_health() before the router is destroyed.
//
// Operator calls complete with (std::exception_ptr, action_result) on the token's
// executor, e.g. `co_await r.async_disable({"pg-2", "admin"}, net::use_awaitable)` or
// `r.async_enable({"pg-2", "ctl"}, net::use_future).get()` from another thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "health/health_view.hpp"
#include "proxy/config/config.hpp"
#include "proxy/router/event_log.hpp"
#include "proxy/router/hooks.hpp"
#include "proxy/router/policy.hpp"
#include "proxy/router/promoter.hpp"
#include "proxy/router/routing_view.hpp"
#include "proxy/router/state_file.hpp"

namespace pgf::router {

// Why an operator call was not carried out.
enum class action_failure {
  none,
  unknown_backend,  // no backend has that name
  refused,          // the policy said no: not eligible, already active, not decided yet
  write_failed,     // the state file could not be written; nothing changed
};

// What an operator call answers; the admin API turns a refusal into an HTTP error.
struct action_result {
  bool is_ok = false;
  action_failure failure = action_failure::none;
  bool changed = true;                // false when the call found things as asked already
  std::string error;                  // why it was refused or failed; empty when ok
  std::uint64_t epoch = 0;            // after the call
  std::optional<std::string> active;  // after the call
};

struct switchover_request {
  std::string to;
  std::string reason;  // the operator's words, kept in the switch record and the events
  bool force = false;  // recorded only: skipping the drain is the caller's part
  std::string who;     // who asked: "admin:127.0.0.1:51234", "signal", ...
  // The caller drained the old backend first (or was told not to wait): sessions still on
  // it are closed at once instead of being given drain_timeout (routing_view::drained).
  bool drained = false;
};

struct backend_request {
  std::string name;
  std::string who;
  std::string reason;    // the operator's words, kept in the events
  bool drained = false;  // as in switchover_request, when this call moves the active backend
};

// Who asked for a pause, a resume or a reload, and why.
struct pause_request {
  std::string who;
  std::string reason;
};

// Plain counters until the metrics registry takes them over.
struct router_counters {
  std::atomic<std::uint64_t> switches{0};
  std::atomic<std::uint64_t> hooks_ok{0};
  std::atomic<std::uint64_t> hooks_failed{0};
  std::atomic<std::uint64_t> hooks_timeout{0};
  std::atomic<std::uint64_t> promotions_ok{0};
  std::atomic<std::uint64_t> promotions_failed{0};
  std::atomic<std::uint64_t> state_write_failures{0};
};

class router {
 public:
  using subscriber = std::function<void(const routing_view_ptr&)>;
  using completion = void(std::exception_ptr, action_result);

  // Publishes a first view at once: deciding, nothing active, every backend unknown.
  router(boost::asio::io_context& control, std::shared_ptr<const config::config> cfg,
         std::string state_path);
  ~router();
  router(const router&) = delete;
  router& operator=(const router&) = delete;

  // Reads the state file (throws state_file_error when it exists but cannot be trusted),
  // writes it back (throws state_file_error when it cannot be written), starts the
  // startup_wait clock and evaluates what the probes reported so far.
  void start();
  // Any thread: cancels the timers and ignores later health views. Hooks and promotions
  // already running finish on their own threads.
  void stop();
  // Any thread: a new health view (from the checker's on_change).
  void on_health(health::health_view_ptr view);

  // Planned switch to `request.to`: refused unless it is eligible apart from fencing.
  // The drain before it (pause, wait drain_timeout, resume) belongs to the caller.
  template <typename CompletionToken>
  auto async_switchover(switchover_request request, CompletionToken&& token) {
    return on_control([this, r = std::move(request)] { return do_switchover(r); },
                      std::forward<CompletionToken>(token));
  }
  // Takes a backend out of routing; switches away from it when it is active.
  template <typename CompletionToken>
  auto async_disable(backend_request request, CompletionToken&& token) {
    return on_control([this, r = std::move(request)] { return do_disable(r); },
                      std::forward<CompletionToken>(token));
  }
  // Clears disabled and fenced; switches only when the policy says so.
  template <typename CompletionToken>
  auto async_enable(backend_request request, CompletionToken&& token) {
    return on_control([this, r = std::move(request)] { return do_enable(r); },
                      std::forward<CompletionToken>(token));
  }
  // The operator's pause: sets or clears it (routing_view::paused); sessions do the
  // holding. Answers changed = false when it was already so.
  template <typename CompletionToken>
  auto async_pause(pause_request request, CompletionToken&& token) {
    return on_control([this, r = std::move(request)] { return do_pause(r, true); },
                      std::forward<CompletionToken>(token));
  }
  template <typename CompletionToken>
  auto async_resume(pause_request request, CompletionToken&& token) {
    return on_control([this, r = std::move(request)] { return do_pause(r, false); },
                      std::forward<CompletionToken>(token));
  }
  // A hold for a planned switch's drain, independent of the operator's pause: traffic is
  // paused while either is in place. `why` is what held clients are told. `target`, when
  // set, is where the switch will go: new sessions may log in there during the hold and
  // wait before their first query (routing_view::staged). Each hold(true) needs its
  // hold(false).
  template <typename CompletionToken>
  auto async_hold(bool is_held, std::string why, std::optional<std::string> target,
                  CompletionToken&& token) {
    return on_control([this, is_held, w = std::move(why),
                       t = std::move(target)] { return do_hold(is_held, w, t); },
                      std::forward<CompletionToken>(token));
  }
  // A new configuration. Never switches by itself: eligibility follows the new settings
  // at once, but a new priority order only acts through auto failback after failback_after
  // of stability, or a switchover. The state file's path stays the one given at start.
  template <typename CompletionToken>
  auto async_reload(std::shared_ptr<const config::config> cfg, pause_request request,
                    CompletionToken&& token) {
    return on_control(
        [this, c = std::move(cfg), r = std::move(request)] { return do_reload(c, r); },
        std::forward<CompletionToken>(token));
  }

  routing_view_ptr view() const;
  // Registers a callback for every publication. Call before start().
  void subscribe(subscriber fn);
  // Registers a callback for every switch of the active backend, with who caused it; it
  // runs on the control strand before the view that carries the switch is published.
  // Call before start().
  using switch_observer = std::function<void(const switch_record&, const std::string& who)>;
  void on_switch(switch_observer fn) { switch_observers_.push_back(std::move(fn)); }
  // Any thread: records an operator call the router never saw (refused before reaching
  // it, or a reload refused for its file's errors) in the log and the events.
  void note_operator(std::string backend, std::string text, const std::string& who);
  // The last 200 events, oldest first.
  std::vector<router_event> events() const { return events_.snapshot(); }
  const router_counters& counters() const { return counters_; }

 private:
  // Who caused a commit, and what to say when it unfences a backend.
  struct commit_context {
    std::string who = "router";
    std::string unfence_reason = "eligible for failback_after";
    bool drained = false;  // a switch in this commit follows a drain
  };

  template <typename Fn, typename CompletionToken>
  auto on_control(Fn fn, CompletionToken&& token) {
    return boost::asio::co_spawn(
        strand_,
        [fn = std::move(fn)]() mutable -> boost::asio::awaitable<action_result> { co_return fn(); },
        std::forward<CompletionToken>(token));
  }

  action_result do_switchover(const switchover_request& request);
  action_result do_disable(const backend_request& request);
  action_result do_enable(const backend_request& request);
  action_result do_pause(const pause_request& request, bool is_paused);
  action_result do_hold(bool is_held, const std::string& why,
                        const std::optional<std::string>& target);
  void publish_pause();
  void set_pause_fields(routing_view& v) const;
  action_result do_reload(std::shared_ptr<const config::config> cfg, const pause_request& request);
  bool is_known(const std::string& backend) const;
  action_result finish_action(policy_decision d, const commit_context& ctx, std::string action,
                              std::string backend);

  void handle_health(health::health_view_ptr view);
  void reevaluate();
  bool commit(policy_decision d, const commit_context& ctx);
  bool persist(const policy_state& next);
  void hold_after_write_failure(const policy_decision& failed);
  policy_input input() const;
  void arm_timer(std::optional<clock::time_point> at);

  void record_switch(const switch_record& s, const std::string& who);
  void record_fencing(const policy_state& before, const commit_context& ctx);
  void record_promotion_end(const policy_state& before);
  void record_states(const std::vector<backend_verdict>& verdicts);
  void record_operator(std::string backend, std::string reason, const std::string& who);
  void add_operator_event(std::string backend, std::string text, const std::string& who,
                          std::uint64_t epoch);
  void run_hook(const switch_record& s);
  void start_promotion(const promote_request& request);
  void on_hook_done(const switch_hook_call& call, const command_result& result);
  void on_promotion_done(const promote_call& call, const promote_outcome& outcome);

  routing_view make_view(const std::vector<backend_verdict>& verdicts, bool is_deciding) const;
  void publish_if_changed(routing_view next);
  void publish(routing_view next);
  action_result answer() const;

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer wakeup_;

  // Owned by the control strand.
  std::shared_ptr<const config::config> cfg_;
  std::string state_path_;
  health::health_view_ptr health_;
  policy_state state_;  // the durable decision: what the state file says
  bool is_started_ = false;
  bool is_stopped_ = false;
  bool is_paused_ = false;  // by an operator
  std::string pause_why_;
  unsigned holds_ = 0;  // drains under way
  std::string hold_why_;
  std::optional<std::string> hold_target_;
  bool drained_ = false;  // the last switch followed a drain
  bool is_write_failing_ = false;
  std::string write_error_;
  std::map<std::string, route_status> last_status_;  // for "state" events
  std::string switch_reason_;
  std::string switch_detail_;

  // Publication.
  mutable std::mutex mutex_;
  routing_view_ptr current_;
  std::atomic<std::uint64_t> generation_{0};
  std::vector<subscriber> subscribers_;
  std::vector<switch_observer> switch_observers_;

  event_log events_;
  router_counters counters_;
  // Last: their threads are joined before anything they report into goes away.
  switch_hooks hooks_;
  promoter promoter_;
};

}  // namespace pgf::router
