// The failover policy: which backend is active, under which epoch, which ones are fenced
// and why every other backend cannot take new work. Pure: no I/O, no clock, no logging;
// the caller passes `now` and keeps the policy_state between calls.
//
// The rules, in the order they apply on every evaluation:
// - Startup: nothing is chosen until startup_wait has passed since start, or sooner once the
//   first probe round is complete and the backend that would win is the one preferred
//   anyway (the persisted active one, or the first by priority that is neither disabled nor
//   fenced). A persisted active backend that is eligible then stays active under its
//   persisted epoch; persisted fenced backends stay fenced.
// - A backend is eligible when it is up, not disabled, not fenced, its role fits
//   target_session_attrs and its ready_query (if any) said true.
// - An eligible active backend stays active: a better backend becoming eligible never
//   switches by itself with failback = manual. With failback = auto, a backend ranked before
//   the active one that has been eligible for failback_after takes over ("failback").
// - An active backend that is no longer eligible is replaced by the best eligible one, or
//   by none when there is none. Either way the epoch grows, so nothing keeps using it.
// - With no active backend, the best eligible one becomes active (epoch + 1).
// - Fencing: the backend that was last active is fenced as soon as another one becomes
//   active, whether directly or after a period with none. A backend that went down and
//   returns while nothing else took its place is not fenced: nobody wrote elsewhere.
//   The one switched away from is fenced on every kind of switch, a failback and an
//   operator's switchover included. After an automatic failback that fences the standby
//   that served meanwhile: that is intended, it ranks lower and it missed the writes that
//   go to the preferred backend from then on.
// - Manual failback: a fenced backend stays fenced until an operator enables it or switches
//   to it. Auto failback: it is unfenced once it has been continuously eligible apart from
//   fencing for failback_after, counted from the moment it was fenced at the earliest.
// - Promotion: when the active backend is lost to its health and the best backend that is
//   up is a standby with a promotion method, it is promoted (at most once per epoch). While
//   its promotion runs (up to its promote_timeout) no backend ranked after it is chosen:
//   the design waits for the promoted one rather than moving writes to a third copy. A
//   promotion given up on (timeout, disabled, or another backend became active first) fences
//   its backend: the promotion may still complete and leave a copy that missed writes.
// - Every switch increments the epoch; the epoch never decreases.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "health/health_view.hpp"
#include "proxy/config/config.hpp"
#include "proxy/router/routing_view.hpp"

namespace pgf::router {

using clock = std::chrono::steady_clock;

struct backend_verdict {
  std::string name;
  route_status status = route_status::unknown;
  bool is_fenced = false;
  bool is_disabled = false;
  std::string why_not;  // empty when eligible

  bool is_eligible() const { return status == route_status::eligible; }
  // Everything but fencing allows it: what auto failback and a switchover look at.
  bool is_clean() const {
    return status == route_status::eligible || status == route_status::fenced;
  }
};

// Everything the policy remembers between evaluations. The router keeps one, persists
// epoch, active, last_active, fenced and disabled, and sets started_at at start.
struct policy_state {
  std::uint64_t epoch = 0;
  std::optional<std::string> active;
  // The backend that was active most recently: the active one, or the one lost last while
  // none is active. The next different backend to become active fences it.
  std::optional<std::string> last_active;
  std::set<std::string> fenced;
  std::set<std::string> disabled;
  bool has_decided = false;  // false until the first choice after start
  clock::time_point started_at{};
  // For each backend that is eligible apart from fencing: since when, continuously.
  std::map<std::string, clock::time_point> clean_since;
  // The epoch in which a promotion was last requested, and the one being waited for.
  std::optional<std::uint64_t> promoted_epoch;
  std::optional<std::string> promoting;
  clock::time_point promote_deadline{};
};

struct policy_input {
  std::span<const config::backend_config> backends;  // sorted by priority, best first
  const config::failover_settings& failover;
  const health::health_view* health = nullptr;  // null: nothing reported yet
  clock::time_point now;
};

// One change of the active backend. `reason` is a short fixed word fit for a metrics label
// ("down", "failback", "switchover", ...); `detail` says it in words for people.
struct switch_record {
  std::optional<std::string> from;  // none when nothing was active
  std::optional<std::string> to;    // none when nothing is eligible
  std::uint64_t epoch = 0;          // the epoch the switch moved to
  std::string reason;
  std::string detail;
};

struct promote_request {
  std::string backend;
  std::uint64_t epoch = 0;  // requested in this epoch; never twice in one
};

struct policy_decision {
  policy_state state;                     // to keep for the next call (and persist)
  bool deciding = false;                  // still waiting for the first probe round
  std::vector<backend_verdict> backends;  // same order as policy_input::backends
  std::vector<switch_record> switches;    // in the order they happened; usually 0 or 1
  std::optional<promote_request> promote;
  // The earliest time at which a timer-driven rule (startup_wait, failback_after,
  // promote_timeout) may change the decision without any new health report.
  std::optional<clock::time_point> next_wakeup;
  std::string error;  // an operator action was refused: why; `state` is unchanged then
};

// Applies every rule to the latest health view.
policy_decision evaluate(const policy_input& in, const policy_state& state);

// Operator actions. Each applies the action and then evaluates, so the decision also holds
// what follows from it (a switch away from a disabled active backend, say).
//
// switchover: refused unless `to` is configured, not already active and eligible apart from
// fencing; switching to a fenced backend unfences it. `detail` goes into the switch record.
policy_decision switchover(const policy_input& in, const policy_state& state, std::string_view to,
                           std::string_view detail);
// disable: takes `name` out of routing; if it is active the router switches away
// ("disabled").
policy_decision disable(const policy_input& in, const policy_state& state, std::string_view name);
// enable: clears disabled and fenced. It switches only when the rules say so: nothing is
// active, or auto failback prefers it.
policy_decision enable(const policy_input& in, const policy_state& state, std::string_view name);

// Each backend's verdict under `state`, without changing anything.
std::vector<backend_verdict> judge_all(const policy_input& in, const policy_state& state);

// A reload must not switch by itself: restarting every failback clock makes a new priority
// order take effect only after failback_after of stability, through the failback rule.
void restart_failback_clocks(policy_state& state, clock::time_point now);

}  // namespace pgf::router
