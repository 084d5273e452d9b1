// The failover policy's rules; policy.hpp lists them and says why each is there.
#include "proxy/router/policy.hpp"

#include <algorithm>
#include <numeric>
#include <tuple>
#include <utility>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace pgf::router {

namespace {

using config::session_attrs;
using health::backend_role;
using health::backend_state;

using rank_key = std::tuple<int, std::uint32_t, std::size_t>;

struct mismatch {
  route_status status;
  const char* why;
};

const health::backend_health* find_health(const policy_input& in, std::string_view name) {
  if (in.health == nullptr) {
    return nullptr;
  }
  for (const auto& h : in.health->backends) {
    if (h.name == name) {
      return &h;
    }
  }
  return nullptr;
}

std::optional<std::size_t> index_of(const policy_input& in, std::string_view name) {
  for (std::size_t i = 0; i < in.backends.size(); ++i) {
    if (in.backends[i].name == name) {
      return i;
    }
  }
  return std::nullopt;
}

bool has_promotion(const config::backend_config& b) {
  return b.promote == config::promote_method::sql || b.promote_command.has_value();
}

// libpq's target_session_attrs applied to what the probe saw; nullopt when the role fits.
std::optional<mismatch> role_mismatch(session_attrs attrs, const health::backend_health& h) {
  bool is_standby = h.role == backend_role::standby;
  switch (attrs) {
    case session_attrs::any:
    case session_attrs::prefer_standby:
      return std::nullopt;
    case session_attrs::read_write:
      if (is_standby) {
        return mismatch{route_status::role, "standby (target_session_attrs=read-write)"};
      }
      if (h.read_only) {
        return mismatch{route_status::read_only, "read-only (default_transaction_read_only=on)"};
      }
      return std::nullopt;
    case session_attrs::read_only:
      if (is_standby || h.read_only) {
        return std::nullopt;
      }
      return mismatch{route_status::role, "read-write (target_session_attrs=read-only)"};
    case session_attrs::primary:
      if (is_standby) {
        return mismatch{route_status::role, "standby (target_session_attrs=primary)"};
      }
      return std::nullopt;
    case session_attrs::standby:
      if (!is_standby) {
        return mismatch{route_status::role, "primary (target_session_attrs=standby)"};
      }
      return std::nullopt;
  }
  return std::nullopt;
}

std::string fenced_text(const config::failover_settings& failover) {
  std::string text =
      "fenced: the active backend moved away from it; enable it or switch to it to use it again";
  if (failover.failback == config::failback_policy::automatic) {
    text += fmt::format(" (or wait until it has been eligible for failback_after = {})",
                        failover.failback_after);
  }
  return text;
}

backend_verdict judge(const policy_input& in, const policy_state& state,
                      const config::backend_config& b) {
  backend_verdict v;
  v.name = b.name;
  v.is_fenced = state.fenced.contains(b.name);
  v.is_disabled = state.disabled.contains(b.name);
  auto set = [&v](route_status status, std::string why) {
    v.status = status;
    v.why_not = std::move(why);
    return v;
  };

  if (v.is_disabled) {
    return set(route_status::disabled, "disabled by operator");
  }
  const auto* h = find_health(in, b.name);
  if (h == nullptr || h->state == backend_state::unknown) {
    return set(route_status::unknown, "unknown: not probed yet");
  }
  if (h->state == backend_state::down) {
    return set(route_status::down, h->last_error.empty() ? "down" : "down: " + h->last_error);
  }
  if (auto m = role_mismatch(in.failover.target_session_attrs, *h)) {
    if (m->status == route_status::role && state.promoting == b.name) {
      return set(route_status::promoting,
                 fmt::format("promoting: waiting up to {} for it to leave recovery (requested "
                             "in epoch {})",
                             b.promote_timeout, state.promoted_epoch.value_or(state.epoch)));
    }
    return set(m->status, m->why);
  }
  if (!h->ready) {
    return set(route_status::not_ready,
               h->last_error.empty() ? "ready_query returned false" : h->last_error);
  }
  if (v.is_fenced) {
    return set(route_status::fenced, fenced_text(in.failover));
  }
  return set(route_status::eligible, "");
}

// Lower is better: priority first; with prefer-standby, standbys before everything else.
rank_key rank(const policy_input& in, std::size_t index) {
  const auto& b = in.backends[index];
  const auto* h = find_health(in, b.name);
  bool prefers = in.failover.target_session_attrs == session_attrs::prefer_standby;
  int group = prefers && h != nullptr && h->role == backend_role::standby ? 0 : 1;
  return {group, b.priority, index};
}

std::vector<std::size_t> ranked(const policy_input& in) {
  std::vector<std::size_t> order(in.backends.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&in](std::size_t a, std::size_t b) { return rank(in, a) < rank(in, b); });
  return order;
}

std::optional<std::size_t> best_eligible(const policy_input& in,
                                         const std::vector<backend_verdict>& verdicts) {
  for (auto i : ranked(in)) {
    if (verdicts[i].is_eligible()) {
      return i;
    }
  }
  return std::nullopt;
}

void track_clean(const policy_input& in, policy_state& state,
                 const std::vector<backend_verdict>& verdicts) {
  std::map<std::string, clock::time_point> next;
  for (const auto& v : verdicts) {
    if (!v.is_clean()) {
      continue;
    }
    auto it = state.clean_since.find(v.name);
    next.emplace(v.name, it != state.clean_since.end() ? it->second : in.now);
  }
  state.clean_since = std::move(next);
}

// Fencing restarts the failback clock: auto failback counts from the fence at the earliest.
void fence(policy_state& state, const std::string& name, clock::time_point now) {
  state.fenced.insert(name);
  auto it = state.clean_since.find(name);
  if (it != state.clean_since.end()) {
    it->second = now;
  }
}

void switch_to(const policy_input& in, policy_decision& d, std::optional<std::string> to,
               std::string reason, std::string detail) {
  auto& s = d.state;
  if (to && s.last_active && *s.last_active != *to) {
    fence(s, *s.last_active, in.now);
  }
  if (to && s.promoting && *s.promoting != *to) {
    // Its promotion was asked for and may still complete (a slow promote_command keeps
    // running): it would then be a second writable copy missing every write made on `to`.
    fence(s, *s.promoting, in.now);
  }
  if (to) {
    s.promoting.reset();
  }

  s.epoch += 1;
  d.switches.push_back({s.active, to, s.epoch, std::move(reason), std::move(detail)});
  s.active = to;
  if (to) {
    s.last_active = std::move(to);
  }
}

void request_promotion(const policy_input& in, policy_decision& d, std::size_t index) {
  const auto& b = in.backends[index];
  d.state.promoting = b.name;
  d.state.promoted_epoch = d.state.epoch;
  d.state.promote_deadline = in.now + b.promote_timeout;
  d.promote = promote_request{b.name, d.state.epoch};
}

// The best backend that is up, unless it is eligible already: a standby that can be
// promoted. Only target_session_attrs values that exclude standbys need a promotion.
std::optional<std::size_t> promotion_candidate(const policy_input& in, const policy_state& state,
                                               const std::vector<backend_verdict>& verdicts) {
  auto attrs = in.failover.target_session_attrs;
  if (attrs != session_attrs::read_write && attrs != session_attrs::primary) {
    return std::nullopt;
  }
  if (state.promoted_epoch == state.epoch) {
    return std::nullopt;
  }
  for (auto i : ranked(in)) {
    const auto& b = in.backends[i];
    const auto& v = verdicts[i];
    if (b.name == state.last_active || v.is_disabled || v.is_fenced) {
      continue;
    }
    if (v.is_eligible()) {
      return std::nullopt;
    }
    const auto* h = find_health(in, b.name);
    bool is_up_standby = v.status == route_status::role && h != nullptr &&
                         h->role == backend_role::standby && h->ready;
    if (is_up_standby && has_promotion(b)) {
      return i;
    }
  }
  return std::nullopt;
}

void lose_active(const policy_input& in, policy_decision& d,
                 const std::vector<backend_verdict>& verdicts, std::optional<std::size_t> index) {
  const std::string lost = *d.state.active;
  std::string reason = to_string(index ? verdicts[*index].status : route_status::removed);
  std::string detail = index ? fmt::format("{}: {}", lost, verdicts[*index].why_not)
                             : fmt::format("{}: removed from the configuration", lost);

  auto best = best_eligible(in, verdicts);
  bool is_health_loss = index && verdicts[*index].status != route_status::disabled;
  auto candidate = is_health_loss ? promotion_candidate(in, d.state, verdicts) : std::nullopt;
  if (candidate && (!best || rank(in, *candidate) < rank(in, *best))) {
    detail += fmt::format("; promoting {}", in.backends[*candidate].name);
    switch_to(in, d, std::nullopt, reason, detail);
    request_promotion(in, d, *candidate);
    return;
  }

  std::optional<std::string> to;
  if (best) {
    to = in.backends[*best].name;
  }
  switch_to(in, d, std::move(to), reason, detail);
}

// With no active backend while a promotion runs: take the promoted backend once it is
// eligible, or a better one that came back; hold everything ranked after it meanwhile.
void wait_for_promotion(const policy_input& in, policy_decision& d,
                        const std::vector<backend_verdict>& verdicts,
                        std::optional<std::size_t> best) {
  auto index = index_of(in, *d.state.promoting);
  if (!index) {
    return;
  }
  const auto& name = in.backends[*index].name;
  if (verdicts[*index].is_eligible()) {
    switch_to(in, d, name, "promoted", fmt::format("{} left recovery after its promotion", name));
    return;
  }
  if (best && rank(in, *best) < rank(in, *index)) {
    const auto& better = in.backends[*best].name;
    switch_to(in, d, better, "available",
              fmt::format("{} is eligible while {} is still promoting", better, name));
  }
}

void fill_vacancy(const policy_input& in, policy_decision& d,
                  const std::vector<backend_verdict>& verdicts, bool is_first) {
  auto best = best_eligible(in, verdicts);
  if (d.state.promoting) {
    wait_for_promotion(in, d, verdicts, best);
    return;
  }
  if (best) {
    const auto& name = in.backends[*best].name;
    if (is_first) {
      switch_to(in, d, name, "startup", fmt::format("{} is the best eligible backend", name));
    } else {
      switch_to(in, d, name, "available", fmt::format("{} is eligible", name));
    }
    return;
  }

  // Nothing is eligible after a loss: a standby that came up since may be promoted, still
  // at most once per epoch. Not after an operator disabled the last active backend.
  if (!d.state.last_active) {
    return;
  }
  auto last = index_of(in, *d.state.last_active);
  if (last && verdicts[*last].status == route_status::disabled) {
    return;
  }
  if (auto candidate = promotion_candidate(in, d.state, verdicts)) {
    request_promotion(in, d, *candidate);
  }
}

void fail_back(const policy_input& in, policy_decision& d,
               const std::vector<backend_verdict>& verdicts, std::size_t active) {
  if (in.failover.failback != config::failback_policy::automatic) {
    return;
  }
  auto active_rank = rank(in, active);
  for (auto i : ranked(in)) {
    if (rank(in, i) >= active_rank) {
      return;
    }
    auto since = d.state.clean_since.find(in.backends[i].name);
    bool is_stable = verdicts[i].is_eligible() && since != d.state.clean_since.end() &&
                     in.now - since->second >= in.failover.failback_after;
    if (is_stable) {
      const auto& name = in.backends[i].name;
      switch_to(in, d, name, "failback",
                fmt::format("{} has been eligible for {} and ranks before {}", name,
                            in.failover.failback_after, in.backends[active].name));
      return;
    }
  }
}

void choose_active(const policy_input& in, policy_decision& d, bool is_first) {
  auto verdicts = judge_all(in, d.state);
  if (!d.state.active) {
    fill_vacancy(in, d, verdicts, is_first);
    return;
  }
  auto index = index_of(in, *d.state.active);
  if (index && verdicts[*index].is_eligible()) {
    fail_back(in, d, verdicts, *index);
    return;
  }
  lose_active(in, d, verdicts, index);
}

void expire_promotion(const policy_input& in, policy_state& state) {
  if (!state.promoting) {
    return;
  }
  // A promoting backend an operator disabled can never be chosen: holding everything ranked
  // after it until promote_timeout would refuse all new work for nothing.
  bool is_over = state.active || !index_of(in, *state.promoting) ||
                 state.disabled.contains(*state.promoting) || in.now >= state.promote_deadline;
  if (!is_over) {
    return;
  }
  // Given up on, its promotion may still complete later: fence it, so that it never takes
  // writes unless an operator says so (or auto failback after failback_after).
  if (!state.active && index_of(in, *state.promoting)) {
    fence(state, *state.promoting, in.now);
  }
  state.promoting.reset();
}

void unfence_after_failback(const policy_input& in, policy_state& state) {
  if (in.failover.failback != config::failback_policy::automatic) {
    return;
  }
  for (auto it = state.fenced.begin(); it != state.fenced.end();) {
    auto since = state.clean_since.find(*it);
    bool is_due =
        since != state.clean_since.end() && in.now - since->second >= in.failover.failback_after;
    it = is_due ? state.fenced.erase(it) : std::next(it);
  }
}

std::optional<clock::time_point> next_wakeup(const policy_input& in, const policy_state& s,
                                             const std::vector<backend_verdict>& verdicts) {
  std::optional<clock::time_point> next;
  auto consider = [&](clock::time_point t) {
    if (t > in.now && (!next || t < *next)) {
      next = t;
    }
  };
  auto clock_of = [&](const std::string& name) {
    auto it = s.clean_since.find(name);
    if (it != s.clean_since.end()) {
      consider(it->second + in.failover.failback_after);
    }
  };

  if (!s.has_decided) {
    consider(s.started_at + in.failover.startup_wait);
  }
  if (s.promoting) {
    consider(s.promote_deadline);
  }
  if (in.failover.failback != config::failback_policy::automatic) {
    return next;
  }
  for (const auto& name : s.fenced) {
    clock_of(name);
  }
  auto active = s.active ? index_of(in, *s.active) : std::nullopt;
  for (std::size_t i = 0; active && i < in.backends.size(); ++i) {
    if (verdicts[i].is_eligible() && rank(in, i) < rank(in, *active)) {
      clock_of(in.backends[i].name);
    }
  }
  return next;
}

void finish(const policy_input& in, policy_decision& d) {
  d.backends = judge_all(in, d.state);
  d.deciding = !d.state.has_decided;
  d.next_wakeup = next_wakeup(in, d.state, d.backends);
}

// Before the first choice. A complete first round is not enough by itself: under load the
// preferred backend's first probe may time out while a lesser one answers, and whatever
// is chosen first stays (failback is manual by default). So within startup_wait the router
// chooses only what it would choose anyway: the persisted active backend, or the first
// backend by priority that no operator or fencing ruled out. Once startup_wait has passed
// it takes the best eligible one, whatever it is.
bool is_startup_over(const policy_input& in, const policy_state& state) {
  if (in.now >= state.started_at + in.failover.startup_wait) {
    return true;
  }
  bool is_round_complete = in.health != nullptr && in.health->first_round_complete;
  if (!is_round_complete) {
    return false;
  }

  auto verdicts = judge_all(in, state);
  auto active = state.active ? index_of(in, *state.active) : std::nullopt;
  if (active && verdicts[*active].is_eligible()) {
    return true;
  }
  for (const auto& v : verdicts) {
    if (!v.is_disabled && !v.is_fenced) {
      return v.is_eligible();
    }
  }
  return true;  // every backend is ruled out: waiting changes nothing
}

policy_decision refuse(const policy_state& state, std::string error) {
  policy_decision d;
  d.state = state;
  d.error = std::move(error);
  return d;
}

}  // namespace

std::vector<backend_verdict> judge_all(const policy_input& in, const policy_state& state) {
  std::vector<backend_verdict> verdicts;
  verdicts.reserve(in.backends.size());
  for (const auto& b : in.backends) {
    verdicts.push_back(judge(in, state, b));
  }
  return verdicts;
}

policy_decision evaluate(const policy_input& in, const policy_state& state) {
  policy_decision d;
  d.state = state;
  track_clean(in, d.state, judge_all(in, d.state));

  bool is_first = !d.state.has_decided;
  if (is_first && !is_startup_over(in, d.state)) {
    finish(in, d);
    return d;
  }
  d.state.has_decided = true;

  expire_promotion(in, d.state);
  unfence_after_failback(in, d.state);
  choose_active(in, d, is_first);
  finish(in, d);
  return d;
}

policy_decision switchover(const policy_input& in, const policy_state& state, std::string_view to,
                           std::string_view detail) {
  if (!state.has_decided) {
    return refuse(state,
                  "the router has not chosen a backend yet: it is waiting for the "
                  "first probe round");
  }
  auto index = index_of(in, to);
  if (!index) {
    return refuse(state, fmt::format("no backend is named \"{}\"", to));
  }
  if (state.active == to) {
    return refuse(state, fmt::format("{} is already the active backend", to));
  }
  auto verdict = judge(in, state, in.backends[*index]);
  if (!verdict.is_clean()) {
    return refuse(state, fmt::format("{} is not eligible: {}", to, verdict.why_not));
  }

  // An operator's choice holds for failback_after at least: auto failback must not undo it
  // at once because some other backend has long been stable.
  policy_decision d;
  d.state = state;
  track_clean(in, d.state, judge_all(in, d.state));
  restart_failback_clocks(d.state, in.now);
  d.state.fenced.erase(std::string(to));
  switch_to(in, d, std::string(to), "switchover", std::string(detail));

  auto after = evaluate(in, d.state);
  after.switches.insert(after.switches.begin(), d.switches.begin(), d.switches.end());
  return after;
}

policy_decision disable(const policy_input& in, const policy_state& state, std::string_view name) {
  if (!index_of(in, name)) {
    return refuse(state, fmt::format("no backend is named \"{}\"", name));
  }
  auto next = state;
  next.disabled.insert(std::string(name));
  return evaluate(in, next);
}

policy_decision enable(const policy_input& in, const policy_state& state, std::string_view name) {
  std::string key(name);
  bool is_known = index_of(in, name) || state.fenced.contains(key) || state.disabled.contains(key);
  if (!is_known) {
    return refuse(state, fmt::format("no backend is named \"{}\"", name));
  }
  auto next = state;
  next.disabled.erase(key);
  next.fenced.erase(key);
  return evaluate(in, next);
}

void restart_failback_clocks(policy_state& state, clock::time_point now) {
  for (auto& [name, since] : state.clean_since) {
    since = now;
  }
}

}  // namespace pgf::router
