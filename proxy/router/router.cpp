// The router's control-strand side: evaluating the policy, persisting and publishing its
// decisions, and recording every change as a log line and an event.
#include "proxy/router/router.hpp"

#include <algorithm>
#include <utility>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace pgf::router {

namespace net = boost::asio;

namespace {

// After a failed state-file write, how soon the router tries again by itself.
constexpr std::chrono::milliseconds state_write_retry{1000};

// Generations are unique across router instances, so a thread's cached view can never be
// mistaken for the current one of a newer router that reuses an old one's address.
std::atomic<std::uint64_t> last_generation{0};

std::string name_or_none(const std::optional<std::string>& name) {
  return name.value_or("none");
}

persisted_state to_persisted(const policy_state& s) {
  persisted_state p;
  p.epoch = s.epoch;
  p.active = s.active;
  p.last_active = s.last_active;
  p.fenced.assign(s.fenced.begin(), s.fenced.end());
  p.disabled.assign(s.disabled.begin(), s.disabled.end());
  return p;
}

policy_state from_persisted(const persisted_state& p) {
  policy_state s;
  s.epoch = p.epoch;
  s.active = p.active;
  s.last_active = p.last_active;
  s.fenced.insert(p.fenced.begin(), p.fenced.end());
  s.disabled.insert(p.disabled.begin(), p.disabled.end());
  return s;
}

bool same_backends(const std::vector<backend_route_state>& a,
                   const std::vector<backend_route_state>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.eligible == y.eligible && x.fenced == y.fenced &&
           x.disabled == y.disabled && x.status == y.status && x.why_not == y.why_not;
  });
}

// Whether publishing `next` would tell sessions or the admin API anything new.
bool same_decision(const routing_view& a, const routing_view& b) {
  return a.epoch == b.epoch && a.active == b.active && a.deciding == b.deciding &&
         a.paused == b.paused && a.pause_reason == b.pause_reason && a.drained == b.drained &&
         a.staged == b.staged && a.staged_epoch == b.staged_epoch && a.cfg == b.cfg &&
         a.switch_reason == b.switch_reason && a.switch_detail == b.switch_detail &&
         same_backends(a.backends, b.backends);
}

const char* promote_method_name(const promote_call& call) {
  return call.command ? "command" : "sql";
}

}  // namespace

router::router(net::io_context& control, std::shared_ptr<const config::config> cfg,
               std::string state_path)
    : strand_(net::make_strand(control)),
      wakeup_(strand_),
      cfg_(std::move(cfg)),
      state_path_(std::move(state_path)),
      hooks_([this](const switch_hook_call& c, const command_result& r) { on_hook_done(c, r); }),
      promoter_(
          [this](const promote_call& c, const promote_outcome& o) { on_promotion_done(c, o); }) {
  auto verdicts = judge_all(input(), state_);
  for (const auto& v : verdicts) {
    last_status_[v.name] = v.status;
  }
  publish(make_view(verdicts, true));
}

router::~router() = default;

// ---- lifecycle and inputs ----

void router::start() {
  auto persisted = read_state_file(state_path_);
  if (persisted) {
    state_ = from_persisted(*persisted);
  }
  // Every later decision must be written here before it takes effect: a path that cannot
  // be written would leave the proxy serving nobody, so find out now, not at the first
  // switch.
  auto error =
      write_state_file(state_path_, to_persisted(state_), std::chrono::system_clock::now());
  if (error) {
    throw state_file_error(*error +
                           " (every routing decision is recorded there before it "
                           "takes effect; set [proxy] state_file to a writable path)");
  }
  state_.started_at = clock::now();
  is_started_ = true;
  spdlog::info(
      "router started state_file={} epoch={} active={} fenced=[{}] disabled=[{}] "
      "startup_wait_ms={}",
      state_path_, state_.epoch, name_or_none(state_.active), fmt::join(state_.fenced, ","),
      fmt::join(state_.disabled, ","), cfg_->failover.startup_wait.count());
  reevaluate();
}

void router::stop() {
  net::post(strand_, [this] {
    is_stopped_ = true;
    wakeup_.cancel();
  });
}

void router::on_health(health::health_view_ptr view) {
  net::post(strand_, [this, view = std::move(view)]() mutable { handle_health(std::move(view)); });
}

void router::handle_health(health::health_view_ptr view) {
  health_ = std::move(view);
  if (is_started_ && !is_stopped_) {
    reevaluate();
  }
}

policy_input router::input() const {
  return {cfg_->backends, cfg_->failover, health_.get(), clock::now()};
}

void router::reevaluate() {
  commit(evaluate(input(), state_), {});
}

void router::arm_timer(std::optional<clock::time_point> at) {
  if (is_write_failing_) {
    auto retry = clock::now() + state_write_retry;
    at = at ? std::min(*at, retry) : retry;
  }
  if (!at || is_stopped_) {
    wakeup_.cancel();
    return;
  }
  wakeup_.expires_at(*at);
  wakeup_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !is_stopped_) {
      reevaluate();
    }
  });
}

// ---- committing a decision ----

// A decision takes effect only once its durable part (epoch, active, fenced, disabled) is
// in the state file: a restart must never return to a backend that was switched away from,
// nor reuse an epoch that sessions already saw. When the write fails the decision is
// dropped whole; hold_after_write_failure() keeps the previous one where that is safe.
bool router::commit(policy_decision d, const commit_context& ctx) {
  if (!persist(d.state)) {
    hold_after_write_failure(d);
    return false;
  }

  auto before = std::move(state_);
  state_ = std::move(d.state);
  if (!d.switches.empty()) {
    drained_ = ctx.drained;
  }
  record_fencing(before, ctx);
  record_promotion_end(before);
  for (const auto& s : d.switches) {
    record_switch(s, ctx.who);
  }
  record_states(d.backends);

  publish_if_changed(make_view(d.backends, d.deciding));
  for (const auto& s : d.switches) {
    run_hook(s);
  }
  if (d.promote) {
    start_promotion(*d.promote);
  }
  arm_timer(d.next_wakeup);
  return true;
}

bool router::persist(const policy_state& next) {
  auto wanted = to_persisted(next);
  if (wanted == to_persisted(state_)) {
    return true;
  }
  auto error = write_state_file(state_path_, wanted, std::chrono::system_clock::now());
  if (error) {
    ++counters_.state_write_failures;
    if (!is_write_failing_ || *error != write_error_) {
      spdlog::error("state file write failed path={} error={:?} epoch={} wanted_epoch={}",
                    state_path_, *error, state_.epoch, wanted.epoch);
    }
    is_write_failing_ = true;
    write_error_ = *error;
    return false;
  }
  if (is_write_failing_) {
    spdlog::info("state file write recovered path={} epoch={}", state_path_, wanted.epoch);
  }
  is_write_failing_ = false;
  write_error_.clear();
  return true;
}

// The new decision could not be made durable, so it must not be published: sessions would
// act on an epoch and a fencing that a restart forgets. The previous decision is on disk;
// it keeps serving while its active backend is still eligible, else nothing is active
// (make_view publishes an ineligible active backend as none). A retry is armed.
void router::hold_after_write_failure(const policy_decision& failed) {
  auto verdicts = judge_all(input(), state_);
  record_states(verdicts);
  publish_if_changed(make_view(verdicts, !state_.has_decided));
  arm_timer(failed.next_wakeup);
}

// ---- events and logs ----

void router::record_switch(const switch_record& s, const std::string& who) {
  ++counters_.switches;
  for (const auto& observe : switch_observers_) {
    observe(s, who);
  }
  switch_reason_ = s.reason;
  switch_detail_ = s.detail;
  spdlog::warn("switch from={} to={} epoch={} reason={:?} detail={:?} who={}", name_or_none(s.from),
               name_or_none(s.to), s.epoch, s.reason, s.detail, who);
  events_.add({std::chrono::system_clock::now(), event_kind::switched, "", s.from, s.to, s.epoch,
               s.reason + ": " + s.detail, who});
}

void router::record_fencing(const policy_state& before, const commit_context& ctx) {
  auto now = std::chrono::system_clock::now();
  for (const auto& name : state_.fenced) {
    if (!before.fenced.contains(name)) {
      spdlog::info("backend fenced backend={} epoch={}", name, state_.epoch);
      events_.add({now,
                   event_kind::fenced,
                   name,
                   {},
                   {},
                   state_.epoch,
                   "the active backend moved away from it",
                   ctx.who});
    }
  }
  for (const auto& name : before.fenced) {
    if (!state_.fenced.contains(name)) {
      spdlog::info("backend unfenced backend={} epoch={} reason={:?}", name, state_.epoch,
                   ctx.unfence_reason);
      events_.add(
          {now, event_kind::unfenced, name, {}, {}, state_.epoch, ctx.unfence_reason, ctx.who});
    }
  }
}

// A promotion that ended without its backend becoming active: it timed out, or another
// backend took over first.
void router::record_promotion_end(const policy_state& before) {
  if (!before.promoting || state_.promoting == before.promoting) {
    return;
  }
  if (state_.active == before.promoting) {
    return;
  }
  auto reason = state_.active ? fmt::format("abandoned: {} became active first", *state_.active)
                              : std::string("gave up: not eligible within promote_timeout");
  spdlog::warn("promotion ended backend={} epoch={} reason={:?}", *before.promoting, state_.epoch,
               reason);
  events_.add({std::chrono::system_clock::now(),
               event_kind::promote,
               *before.promoting,
               {},
               {},
               state_.epoch,
               reason,
               "router"});
}

void router::record_states(const std::vector<backend_verdict>& verdicts) {
  std::map<std::string, route_status> next;
  auto now = std::chrono::system_clock::now();
  for (const auto& v : verdicts) {
    next[v.name] = v.status;
    auto it = last_status_.find(v.name);
    if (it != last_status_.end() && it->second == v.status) {
      continue;
    }
    std::optional<std::string> from;
    if (it != last_status_.end()) {
      from = to_string(it->second);
    }
    spdlog::info("backend route state backend={} from={} to={} why_not={:?}", v.name,
                 from.value_or("none"), to_string(v.status), v.why_not);
    events_.add({now, event_kind::state, v.name, from, to_string(v.status), state_.epoch,
                 v.why_not.empty() ? std::string("eligible") : v.why_not, "router"});
  }
  last_status_ = std::move(next);
}

void router::note_operator(std::string backend, std::string text, const std::string& who) {
  add_operator_event(std::move(backend), std::move(text), who, view()->epoch);
}

void router::record_operator(std::string backend, std::string reason, const std::string& who) {
  add_operator_event(std::move(backend), std::move(reason), who, state_.epoch);
}

void router::add_operator_event(std::string backend, std::string text, const std::string& who,
                                std::uint64_t epoch) {
  spdlog::info("operator action backend={} who={:?} action={:?}", backend.empty() ? "-" : backend,
               who, text);
  events_.add({std::chrono::system_clock::now(),
               event_kind::operator_action,
               std::move(backend),
               {},
               {},
               epoch,
               std::move(text),
               who});
}

// ---- hooks and promotions ----

void router::run_hook(const switch_record& s) {
  const auto& failover = cfg_->failover;
  if (!failover.on_switch) {
    return;
  }
  hooks_.run(
      {*failover.on_switch, s.from, s.to, s.epoch, s.reason, s.detail, failover.hook_timeout});
}

// Runs on the hook thread: only thread-safe members are touched.
void router::on_hook_done(const switch_hook_call& call, const command_result& result) {
  using outcome = command_result::outcome;
  auto& counter = result.status == outcome::ok        ? counters_.hooks_ok
                  : result.status == outcome::timeout ? counters_.hooks_timeout
                                                      : counters_.hooks_failed;
  ++counter;
  auto level = result.status == outcome::ok ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "on_switch finished result={:?} epoch={} from={} to={} elapsed_ms={}",
              result.describe(), call.epoch, name_or_none(call.from), name_or_none(call.to),
              result.elapsed.count());
  events_.add({std::chrono::system_clock::now(), event_kind::hook, "", call.from, call.to,
               call.epoch, "on_switch: " + result.describe(), "router"});
}

void router::start_promotion(const promote_request& request) {
  auto it = std::find_if(cfg_->backends.begin(), cfg_->backends.end(),
                         [&](const auto& b) { return b.name == request.backend; });
  if (it == cfg_->backends.end()) {
    return;
  }
  auto call = make_promote_call(*it, request.epoch);
  spdlog::warn("promote backend={} method={} epoch={} promote_timeout_ms={}", call.backend,
               promote_method_name(call), call.epoch, call.timeout.count());
  events_.add({std::chrono::system_clock::now(),
               event_kind::promote,
               call.backend,
               {},
               {},
               call.epoch,
               fmt::format("requested ({})", promote_method_name(call)),
               "router"});
  promoter_.run(std::move(call));
}

// Runs on the promoter thread. Success only means the request reached the server or the
// command succeeded: the probes decide when the backend has really left recovery.
void router::on_promotion_done(const promote_call& call, const promote_outcome& outcome) {
  ++(outcome.is_ok ? counters_.promotions_ok : counters_.promotions_failed);
  auto level = outcome.is_ok ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "promote finished backend={} method={} epoch={} result={:?} elapsed_ms={}",
              call.backend, promote_method_name(call), call.epoch, outcome.text,
              outcome.elapsed.count());
  events_.add({std::chrono::system_clock::now(),
               event_kind::promote,
               call.backend,
               {},
               {},
               call.epoch,
               "finished: " + outcome.text,
               "router"});
}

// ---- operator actions (on the control strand) ----

action_result router::answer() const {
  action_result r;
  r.is_ok = true;
  r.epoch = state_.epoch;
  r.active = state_.active;
  return r;
}

action_result router::finish_action(policy_decision d, const commit_context& ctx,
                                    std::string action, std::string backend) {
  if (!is_started_) {
    d.error = "the router has not started yet";
  }
  if (!d.error.empty()) {
    record_operator(backend, fmt::format("{} refused: {}", action, d.error), ctx.who);
    auto r = answer();
    r.is_ok = false;
    r.failure = is_known(backend) ? action_failure::refused : action_failure::unknown_backend;
    r.error = std::move(d.error);
    return r;
  }
  if (!commit(std::move(d), ctx)) {
    auto r = answer();
    r.is_ok = false;
    r.failure = action_failure::write_failed;
    r.error = fmt::format("{} not done: cannot write the state file: {}", action, write_error_);
    return r;
  }
  record_operator(std::move(backend), std::move(action), ctx.who);
  return answer();
}

namespace {

std::string with_reason(std::string action, const std::string& reason) {
  return reason.empty() ? action : fmt::format("{}: {}", action, reason);
}

}  // namespace

bool router::is_known(const std::string& backend) const {
  if (backend.empty()) {
    return true;  // not about a backend
  }
  auto is_configured = std::any_of(cfg_->backends.begin(), cfg_->backends.end(),
                                   [&](const auto& b) { return b.name == backend; });
  return is_configured || state_.fenced.contains(backend) || state_.disabled.contains(backend);
}

action_result router::do_switchover(const switchover_request& request) {
  auto detail = fmt::format("switchover to {} by {}{}{}", request.to, request.who,
                            request.reason.empty() ? "" : ": ", request.reason);
  auto action =
      with_reason(fmt::format("switchover to {}{}", request.to, request.force ? " (force)" : ""),
                  request.reason);
  auto d = switchover(input(), state_, request.to, detail);
  return finish_action(std::move(d), {request.who, "switched to by operator", request.drained},
                       std::move(action), request.to);
}

action_result router::do_disable(const backend_request& request) {
  auto d = disable(input(), state_, request.name);
  return finish_action(std::move(d), {request.who, "disabled by operator", request.drained},
                       with_reason("disable", request.reason), request.name);
}

action_result router::do_enable(const backend_request& request) {
  auto d = enable(input(), state_, request.name);
  return finish_action(std::move(d), {request.who, "enabled by operator", request.drained},
                       with_reason("enable", request.reason), request.name);
}

action_result router::do_pause(const pause_request& request, bool is_paused) {
  auto r = answer();
  r.changed = is_paused_ != is_paused;
  is_paused_ = is_paused;
  if (r.changed) {  // a second pause keeps the first one's words
    pause_why_ =
        is_paused ? with_reason(fmt::format("traffic is paused by {}", request.who), request.reason)
                  : std::string();
  }
  auto action = is_paused ? "pause" : "resume";
  record_operator(
      "", with_reason(r.changed ? action : fmt::format("{} (no change)", action), request.reason),
      request.who);
  publish_pause();
  return r;
}

action_result router::do_hold(bool is_held, const std::string& why,
                              const std::optional<std::string>& target) {
  if (is_held) {
    ++holds_;
    hold_why_ = why;
    hold_target_ = target;
  } else if (holds_ > 0) {
    --holds_;
  }
  if (holds_ == 0) {
    hold_target_.reset();
  }
  publish_pause();
  return answer();
}

void router::set_pause_fields(routing_view& v) const {
  v.paused = is_paused_ || holds_ > 0;
  v.pause_reason = is_paused_ ? pause_why_ : holds_ > 0 ? hold_why_ : std::string();
  v.staged.reset();
  v.staged_epoch = 0;
  if (holds_ > 0 && hold_target_) {
    for (std::size_t i = 0; i < v.backends.size(); ++i) {
      const auto& b = v.backends[i];
      bool is_clean = b.status == route_status::eligible || b.status == route_status::fenced;
      if (b.name == *hold_target_ && is_clean && v.active != i) {
        v.staged = i;
        v.staged_epoch = v.epoch + 1;
      }
    }
  }
}

void router::publish_pause() {
  routing_view next;
  {
    std::lock_guard lock(mutex_);
    next = *current_;
  }
  set_pause_fields(next);
  publish_if_changed(std::move(next));
}

action_result router::do_reload(std::shared_ptr<const config::config> cfg,
                                const pause_request& request) {
  const auto& who = request.who;
  cfg_ = std::move(cfg);
  restart_failback_clocks(state_, clock::now());
  record_operator("", with_reason("reload", request.reason), who);
  if (!is_started_) {
    publish_if_changed(make_view(judge_all(input(), state_), true));
    return answer();
  }
  commit(evaluate(input(), state_), {who, "eligible for failback_after"});
  return answer();
}

// ---- publication ----

routing_view router::make_view(const std::vector<backend_verdict>& verdicts,
                               bool is_deciding) const {
  routing_view v;
  v.epoch = state_.epoch;
  v.deciding = is_deciding;
  v.drained = drained_;
  v.cfg = cfg_;
  v.switch_reason = switch_reason_;
  v.switch_detail = switch_detail_;
  for (std::size_t i = 0; i < verdicts.size(); ++i) {
    const auto& verdict = verdicts[i];
    v.backends.push_back({verdict.name, verdict.is_eligible(), verdict.is_fenced,
                          verdict.is_disabled, verdict.status, verdict.why_not});
    if (!is_deciding && state_.active == verdict.name && verdict.is_eligible()) {
      v.active = i;
    }
  }
  set_pause_fields(v);
  return v;
}

void router::publish_if_changed(routing_view next) {
  {
    std::lock_guard lock(mutex_);
    if (current_ && same_decision(*current_, next)) {
      return;
    }
  }
  publish(std::move(next));
}

routing_view_ptr router::view() const {
  // A per-thread copy keyed by generation: the steady state is one atomic load.
  struct cache {
    const router* owner = nullptr;
    std::uint64_t generation = 0;
    routing_view_ptr view;
  };
  thread_local cache local;
  auto generation = generation_.load(std::memory_order_acquire);
  if (local.owner != this || local.generation != generation) {
    std::lock_guard lock(mutex_);
    local = {this, current_->generation, current_};
  }
  return local.view;
}

void router::subscribe(subscriber fn) {
  std::lock_guard lock(mutex_);
  subscribers_.push_back(std::move(fn));
}

void router::publish(routing_view next) {
  std::vector<subscriber> to_call;
  routing_view_ptr published;
  {
    std::lock_guard lock(mutex_);
    next.generation = ++last_generation;
    published = std::make_shared<const routing_view>(std::move(next));
    current_ = published;
    generation_.store(published->generation, std::memory_order_release);
    to_call = subscribers_;
  }
  for (auto& fn : to_call) {
    fn(published);
  }
}

}  // namespace pgf::router
