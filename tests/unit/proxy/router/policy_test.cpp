// The failover policy: every rule policy.hpp lists, driven by hand-built health views and a
// clock the test advances itself. The fixture carries the policy_state from one evaluation
// to the next exactly as the router does.
#include "proxy/router/policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "health/health_view.hpp"
#include "proxy/config/config.hpp"

namespace pgf::router {
namespace {

using namespace std::chrono_literals;
using health::backend_role;
using health::backend_state;

const clock::time_point t0 = clock::time_point{} + 1h;

config::backend_config backend(std::string name, std::uint32_t priority) {
  config::backend_config b;
  b.name = std::move(name);
  b.priority = priority;
  b.url = "postgresql://app@127.0.0.1:5432/app?sslmode=disable";
  return b;
}

health::backend_health probed(std::string name, backend_state state, backend_role role) {
  health::backend_health h;
  h.name = std::move(name);
  h.state = state;
  h.role = role;
  return h;
}

health::backend_health primary(std::string name) {
  return probed(std::move(name), backend_state::up, backend_role::primary);
}

health::backend_health standby(std::string name) {
  return probed(std::move(name), backend_state::up, backend_role::standby);
}

health::backend_health down(std::string name, std::string error = "connection refused") {
  auto h = probed(std::move(name), backend_state::down, backend_role::unknown);
  h.last_error = std::move(error);
  return h;
}

health::backend_health unprobed(std::string name) {
  return probed(std::move(name), backend_state::unknown, backend_role::unknown);
}

health::backend_health read_only(std::string name) {
  auto h = primary(std::move(name));
  h.read_only = true;
  return h;
}

health::backend_health not_ready(std::string name, std::string why) {
  auto h = primary(std::move(name));
  h.ready = false;
  h.last_error = std::move(why);
  return h;
}

const backend_verdict& verdict_of(const policy_decision& d, std::string_view name) {
  auto it = std::find_if(d.backends.begin(), d.backends.end(),
                         [name](const backend_verdict& v) { return v.name == name; });
  if (it == d.backends.end()) {
    ADD_FAILURE() << "no verdict for " << name;
    static const backend_verdict none;
    return none;
  }
  return *it;
}

// What the random walk below did at one step.
enum class action { evaluate, switchover, disable, enable };

// Three backends a, b, c with priorities 1, 2, 3, all up as primaries after a complete first
// probe round, default [failover] settings and a router started at t0.
class PolicyTest : public ::testing::Test {
 protected:
  PolicyTest() {
    backends_ = {backend("a", 1), backend("b", 2), backend("c", 3)};
    view_.first_round_complete = true;
    view_.backends = {primary("a"), primary("b"), primary("c")};
    state_.started_at = t0;
  }

  policy_input input() const { return policy_input{backends_, failover_, &view_, now_}; }

  // Replaces what the probes say about one backend.
  void report(health::backend_health h) {
    for (auto& entry : view_.backends) {
      if (entry.name == h.name) {
        entry = std::move(h);
        return;
      }
    }
    view_.backends.push_back(std::move(h));
  }

  // Keeps the decision's state for the next call, as the router does.
  policy_decision keep(policy_decision d) {
    EXPECT_EQ(d.error, "");
    state_ = d.state;
    return d;
  }

  policy_decision evaluate_now() { return keep(evaluate(input(), state_)); }

  policy_decision advance(clock::duration by) {
    now_ += by;
    return evaluate_now();
  }

  // Everything up: a is chosen in epoch 1.
  void start_on_a() {
    auto d = evaluate_now();
    ASSERT_EQ(d.state.active, "a");
    ASSERT_EQ(d.state.epoch, 1u);
  }

  // a is lost to its health: b takes over in epoch 2 and a is fenced.
  void fail_over_to_b() {
    start_on_a();
    report(down("a"));
    auto d = advance(1s);
    ASSERT_EQ(d.state.active, "b");
    ASSERT_EQ(d.state.epoch, 2u);
  }

  std::vector<config::backend_config> backends_;
  config::failover_settings failover_;
  health::health_view view_;
  clock::time_point now_ = t0;
  policy_state state_;
};

// ---- Startup ---------------------------------------------------------------------------

TEST_F(PolicyTest, WaitsForTheFirstProbeRoundBeforeChoosing) {
  // b answered first; a, the preferred one, has not been probed yet.
  view_.first_round_complete = false;
  report(unprobed("a"));

  auto waiting = advance(500ms);

  EXPECT_TRUE(waiting.deciding);
  EXPECT_FALSE(waiting.state.active);
  EXPECT_FALSE(waiting.state.has_decided);
  EXPECT_EQ(waiting.state.epoch, 0u);
  EXPECT_TRUE(waiting.switches.empty());
  EXPECT_EQ(waiting.next_wakeup, t0 + failover_.startup_wait);

  view_.first_round_complete = true;
  report(primary("a"));
  auto chosen = advance(100ms);

  EXPECT_FALSE(chosen.deciding);
  EXPECT_EQ(chosen.state.active, "a");
  EXPECT_EQ(chosen.state.epoch, 1u);
  ASSERT_EQ(chosen.switches.size(), 1u);
  EXPECT_EQ(chosen.switches[0].from, std::nullopt);
  EXPECT_EQ(chosen.switches[0].to, "a");
  EXPECT_EQ(chosen.switches[0].epoch, 1u);
  EXPECT_EQ(chosen.switches[0].reason, "startup");
}

TEST_F(PolicyTest, DoesNotSettleForALesserBackendWithinStartupWait) {
  // The preferred backend's first probe timed out (a loaded machine) while b answered: the
  // round is complete, but choosing b now would keep it for good under manual failback.
  view_.first_round_complete = true;
  report(down("a", "timeout after 100ms waiting for the check query"));

  auto waiting = advance(300ms);
  EXPECT_TRUE(waiting.deciding);
  EXPECT_FALSE(waiting.state.active);

  report(primary("a"));
  auto chosen = advance(100ms);
  EXPECT_EQ(chosen.state.active, "a");
  EXPECT_EQ(chosen.state.epoch, 1u);
}

TEST_F(PolicyTest, TakesTheLesserBackendOnceStartupWaitHasPassed) {
  view_.first_round_complete = true;
  report(down("a"));

  auto just_before = advance(failover_.startup_wait - 1ms);
  EXPECT_TRUE(just_before.deciding);

  auto at_deadline = advance(1ms);
  EXPECT_FALSE(at_deadline.deciding);
  EXPECT_EQ(at_deadline.state.active, "b");
}

TEST_F(PolicyTest, ChoosesOnceStartupWaitHasPassedWithoutACompleteRound) {
  view_.first_round_complete = false;
  report(unprobed("a"));

  auto just_before = advance(failover_.startup_wait - 1ms);
  EXPECT_TRUE(just_before.deciding);
  EXPECT_FALSE(just_before.state.active);

  auto at_deadline = advance(1ms);
  EXPECT_FALSE(at_deadline.deciding);
  EXPECT_EQ(at_deadline.state.active, "b");
  EXPECT_EQ(at_deadline.state.epoch, 1u);
  EXPECT_EQ(verdict_of(at_deadline, "a").status, route_status::unknown);
  EXPECT_EQ(verdict_of(at_deadline, "a").why_not, "unknown: not probed yet");
}

TEST_F(PolicyTest, WaitsWhenNoHealthViewHasBeenPublished) {
  auto d = keep(evaluate(policy_input{backends_, failover_, nullptr, t0 + 1s}, state_));

  EXPECT_TRUE(d.deciding);
  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(verdict_of(d, "a").status, route_status::unknown);
}

TEST_F(PolicyTest, HonoursThePersistedActiveBackendAtRestart) {
  // What the state file said before the restart: b took over from a in epoch 7.
  state_.epoch = 7;
  state_.active = "b";
  state_.last_active = "b";
  state_.fenced = {"a"};

  auto d = advance(100ms);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_EQ(d.state.epoch, 7u);
  EXPECT_TRUE(d.switches.empty());
  EXPECT_FALSE(d.deciding);
  EXPECT_EQ(d.state.fenced, std::set<std::string>{"a"});
  EXPECT_EQ(verdict_of(d, "a").status, route_status::fenced);
}

TEST_F(PolicyTest, ReplacesAPersistedActiveBackendThatIsNoLongerEligible) {
  state_.epoch = 7;
  state_.active = "b";
  state_.last_active = "b";
  state_.fenced = {"a"};
  report(down("b"));

  auto d = advance(failover_.startup_wait);

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(d.state.epoch, 8u);
  EXPECT_EQ(d.state.fenced, (std::set<std::string>{"a", "b"}));
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].from, "b");
  EXPECT_EQ(d.switches[0].to, "c");
  EXPECT_EQ(d.switches[0].reason, "down");
}

// ---- Choosing --------------------------------------------------------------------------

TEST_F(PolicyTest, ChoosesTheEligibleBackendWithTheBestPriority) {
  report(down("a"));

  auto d = advance(failover_.startup_wait);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_EQ(d.state.last_active, "b");
  EXPECT_TRUE(d.state.fenced.empty());
  EXPECT_TRUE(verdict_of(d, "b").is_eligible());
  EXPECT_TRUE(verdict_of(d, "c").is_eligible());
  EXPECT_EQ(verdict_of(d, "b").why_not, "");
}

TEST_F(PolicyTest, ReplacesADownActiveWithTheNextEligibleAndGrowsTheEpoch) {
  start_on_a();
  report(down("a", "connection refused"));

  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_EQ(d.state.epoch, 2u);
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].from, "a");
  EXPECT_EQ(d.switches[0].to, "b");
  EXPECT_EQ(d.switches[0].epoch, 2u);
  EXPECT_EQ(d.switches[0].reason, "down");
  EXPECT_NE(d.switches[0].detail.find("connection refused"), std::string::npos)
      << d.switches[0].detail;
}

TEST_F(PolicyTest, SkipsADownSecondChoiceForTheThird) {
  start_on_a();
  report(down("a"));
  report(down("b"));

  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(d.state.epoch, 2u);
}

// ---- Fencing and failback ----------------------------------------------------------------

TEST_F(PolicyTest, FencesTheBackendSwitchedAwayFrom) {
  fail_over_to_b();
  EXPECT_EQ(state_.fenced, std::set<std::string>{"a"});

  report(primary("a"));
  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_TRUE(d.switches.empty());
  const auto& a = verdict_of(d, "a");
  EXPECT_EQ(a.status, route_status::fenced);
  EXPECT_TRUE(a.is_fenced);
  EXPECT_FALSE(a.is_eligible());
  EXPECT_TRUE(a.is_clean());
  EXPECT_EQ(a.why_not.rfind("fenced:", 0), 0u) << a.why_not;
  EXPECT_FALSE(verdict_of(d, "b").is_fenced);
}

TEST_F(PolicyTest, ManualFailbackKeepsTheOldActiveFencedUntilAnOperatorActs) {
  fail_over_to_b();
  report(primary("a"));

  for (int i = 0; i < 120; ++i) {
    auto d = advance(1min);
    ASSERT_TRUE(d.switches.empty()) << "minute " << i;
    ASSERT_EQ(d.state.active, "b");
  }
  EXPECT_EQ(state_.fenced, std::set<std::string>{"a"});
  EXPECT_EQ(state_.epoch, 2u);
  EXPECT_FALSE(evaluate(input(), state_).next_wakeup);

  // Enabling unfences it but does not switch by itself under manual failback.
  auto enabled = keep(enable(input(), state_, "a"));
  EXPECT_TRUE(enabled.state.fenced.empty());
  EXPECT_TRUE(verdict_of(enabled, "a").is_eligible());
  EXPECT_EQ(enabled.state.active, "b");
  EXPECT_TRUE(enabled.switches.empty());

  auto back = keep(switchover(input(), state_, "a", "maintenance over"));
  EXPECT_EQ(back.state.active, "a");
  EXPECT_EQ(back.state.epoch, 3u);
  EXPECT_EQ(back.state.fenced, std::set<std::string>{"b"});
  ASSERT_EQ(back.switches.size(), 1u);
  EXPECT_EQ(back.switches[0].reason, "switchover");
  EXPECT_EQ(back.switches[0].detail, "maintenance over");
}

TEST_F(PolicyTest, SwitchoverToAFencedBackendUnfencesIt) {
  fail_over_to_b();
  report(primary("a"));
  advance(1s);

  auto d = keep(switchover(input(), state_, "a", "operator"));

  EXPECT_EQ(d.state.active, "a");
  EXPECT_EQ(d.state.epoch, 3u);
  EXPECT_FALSE(d.state.fenced.contains("a"));
  EXPECT_TRUE(d.state.fenced.contains("b"));
}

TEST_F(PolicyTest, ManualFailbackNeverSwitchesToABetterBackendThatAppears) {
  report(down("a"));
  advance(failover_.startup_wait);
  ASSERT_EQ(state_.active, "b");

  report(primary("a"));
  auto d = advance(1h);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_TRUE(d.switches.empty());
  // a was never active, so nothing fenced it: it is simply not chosen.
  EXPECT_TRUE(verdict_of(d, "a").is_eligible());
  EXPECT_TRUE(d.state.fenced.empty());
}

TEST_F(PolicyTest, AutoFailbackWaitsForFailbackAfterAndNotLonger) {
  failover_.failback = config::failback_policy::automatic;
  failover_.failback_after = 30s;
  fail_over_to_b();

  report(primary("a"));
  auto returned = advance(5s);
  auto back_since = now_;
  EXPECT_EQ(returned.state.active, "b");
  EXPECT_EQ(returned.next_wakeup, back_since + 30s);

  auto early = advance(30s - 1ms);
  EXPECT_EQ(early.state.active, "b");
  EXPECT_TRUE(early.switches.empty());
  EXPECT_TRUE(early.state.fenced.contains("a"));
  EXPECT_EQ(early.next_wakeup, back_since + 30s);

  auto due = advance(1ms);
  EXPECT_EQ(due.state.active, "a");
  EXPECT_EQ(due.state.epoch, 3u);
  ASSERT_EQ(due.switches.size(), 1u);
  EXPECT_EQ(due.switches[0].from, "b");
  EXPECT_EQ(due.switches[0].to, "a");
  EXPECT_EQ(due.switches[0].reason, "failback");
  // The standby that served meanwhile missed the writes that go to a from now on.
  EXPECT_EQ(due.state.fenced, std::set<std::string>{"b"});
}

TEST_F(PolicyTest, AutoFailbackUnfencesTheStandbyOnlyFailbackAfterItsFence) {
  failover_.failback = config::failback_policy::automatic;
  failover_.failback_after = 30s;
  fail_over_to_b();
  report(primary("a"));
  advance(1s);
  advance(30s);
  ASSERT_EQ(state_.active, "a");
  ASSERT_TRUE(state_.fenced.contains("b"));

  // b has been up all along, but its clock restarted when it was fenced.
  auto early = advance(30s - 1ms);
  EXPECT_TRUE(early.state.fenced.contains("b"));
  auto due = advance(1ms);
  EXPECT_FALSE(due.state.fenced.contains("b"));
  EXPECT_EQ(due.state.active, "a");
  EXPECT_TRUE(due.switches.empty());
}

TEST_F(PolicyTest, AutoFailbackToABetterBackendThatWasNeverActive) {
  failover_.failback = config::failback_policy::automatic;
  failover_.failback_after = 10s;
  report(down("a"));
  advance(failover_.startup_wait);
  ASSERT_EQ(state_.active, "b");

  report(primary("a"));
  auto seen = advance(1s);
  EXPECT_EQ(seen.next_wakeup, now_ + 10s);
  EXPECT_EQ(advance(10s - 1ms).state.active, "b");
  auto d = advance(1ms);

  EXPECT_EQ(d.state.active, "a");
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].reason, "failback");
}

TEST_F(PolicyTest, ReturningBackendIsNotFencedWhenNothingTookItsPlace) {
  start_on_a();
  report(down("a"));
  report(down("b"));
  report(down("c"));
  auto lost = advance(1s);
  EXPECT_FALSE(lost.state.active);
  EXPECT_EQ(lost.state.epoch, 2u);
  EXPECT_EQ(lost.state.last_active, "a");

  report(primary("a"));
  auto back = advance(1s);

  EXPECT_EQ(back.state.active, "a");
  EXPECT_EQ(back.state.epoch, 3u);
  EXPECT_TRUE(back.state.fenced.empty());
  ASSERT_EQ(back.switches.size(), 1u);
  EXPECT_EQ(back.switches[0].from, std::nullopt);
  EXPECT_EQ(back.switches[0].reason, "available");
}

TEST_F(PolicyTest, BackendTakingOverAfterAVacancyFencesTheLastActive) {
  start_on_a();
  report(down("a"));
  report(down("b"));
  report(down("c"));
  advance(1s);

  report(primary("c"));
  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(d.state.epoch, 3u);
  EXPECT_EQ(d.state.fenced, std::set<std::string>{"a"});

  // a comes back but missed c's writes: it stays out even though c is lost later.
  report(primary("a"));
  report(down("c"));
  auto only_fenced = advance(1s);
  EXPECT_FALSE(only_fenced.state.active);
  EXPECT_EQ(verdict_of(only_fenced, "a").status, route_status::fenced);
}

// ---- Eligibility ---------------------------------------------------------------------------

TEST_F(PolicyTest, ReadWriteExcludesStandbysAndReadOnlyServers) {
  ASSERT_EQ(failover_.target_session_attrs, config::session_attrs::read_write);
  report(standby("a"));
  report(read_only("b"));

  auto d = advance(failover_.startup_wait);

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(verdict_of(d, "a").status, route_status::role);
  EXPECT_EQ(verdict_of(d, "a").why_not, "standby (target_session_attrs=read-write)");
  EXPECT_EQ(verdict_of(d, "b").status, route_status::read_only);
  EXPECT_EQ(verdict_of(d, "b").why_not, "read-only (default_transaction_read_only=on)");
}

TEST_F(PolicyTest, ReadOnlyActiveIsReplaced) {
  start_on_a();
  report(read_only("a"));

  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "b");
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].reason, "read_only");
}

TEST_F(PolicyTest, AnyAcceptsStandbysAndReadOnlyServers) {
  failover_.target_session_attrs = config::session_attrs::any;
  report(standby("a"));
  report(read_only("b"));

  auto d = advance(100ms);

  EXPECT_EQ(d.state.active, "a");
  EXPECT_TRUE(verdict_of(d, "b").is_eligible());
}

TEST_F(PolicyTest, TargetSessionAttrsFollowLibpq) {
  using config::session_attrs;
  report(primary("a"));
  report(read_only("b"));
  report(standby("c"));
  struct expectation {
    session_attrs attrs;
    bool accepts_primary, accepts_read_only, accepts_standby;
  };
  const expectation cases[] = {
      {session_attrs::any, true, true, true},
      {session_attrs::read_write, true, false, false},
      {session_attrs::read_only, false, true, true},
      {session_attrs::primary, true, true, false},
      {session_attrs::standby, false, false, true},
      {session_attrs::prefer_standby, true, true, true},
  };

  for (const auto& c : cases) {
    failover_.target_session_attrs = c.attrs;
    auto verdicts = judge_all(input(), state_);
    SCOPED_TRACE(static_cast<int>(c.attrs));
    EXPECT_EQ(verdicts[0].is_eligible(), c.accepts_primary) << verdicts[0].why_not;
    EXPECT_EQ(verdicts[1].is_eligible(), c.accepts_read_only) << verdicts[1].why_not;
    EXPECT_EQ(verdicts[2].is_eligible(), c.accepts_standby) << verdicts[2].why_not;
  }
}

TEST_F(PolicyTest, PreferStandbyChoosesAStandbyBeforeABetterPrimary) {
  failover_.target_session_attrs = config::session_attrs::prefer_standby;
  report(standby("c"));

  EXPECT_EQ(advance(100ms).state.active, "c");
}

TEST_F(PolicyTest, ReadyQueryFalseExcludesTheBackend) {
  report(not_ready("a", "heartbeat is 90s old"));
  auto without_reason = not_ready("b", "");
  report(without_reason);

  auto d = advance(failover_.startup_wait);

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(verdict_of(d, "a").status, route_status::not_ready);
  EXPECT_EQ(verdict_of(d, "a").why_not, "heartbeat is 90s old");
  EXPECT_EQ(verdict_of(d, "b").status, route_status::not_ready);
  EXPECT_EQ(verdict_of(d, "b").why_not, "ready_query returned false");
}

TEST_F(PolicyTest, ActiveWhoseReadyQueryTurnsFalseIsReplaced) {
  start_on_a();
  report(not_ready("a", "replication lag too high"));

  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "b");
  EXPECT_EQ(d.state.epoch, 2u);
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].reason, "not_ready");
}

TEST_F(PolicyTest, DisabledBackendIsExcluded) {
  state_.disabled = {"a"};

  auto d = advance(100ms);

  EXPECT_EQ(d.state.active, "b");
  const auto& a = verdict_of(d, "a");
  EXPECT_EQ(a.status, route_status::disabled);
  EXPECT_TRUE(a.is_disabled);
  EXPECT_EQ(a.why_not, "disabled by operator");
}

TEST_F(PolicyTest, DisablingTheActiveSwitchesAwayWithoutPromoting) {
  backends_[1].promote = config::promote_method::sql;
  report(standby("b"));
  start_on_a();

  auto d = keep(disable(input(), state_, "a"));

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(d.state.epoch, 2u);
  EXPECT_FALSE(d.promote);
  EXPECT_TRUE(d.state.disabled.contains("a"));
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].reason, "disabled");
}

TEST_F(PolicyTest, EnablingTheOnlyBackendBringsItBackUnfenced) {
  backends_ = {backend("a", 1)};
  view_.backends = {primary("a")};
  start_on_a();

  auto off = keep(disable(input(), state_, "a"));
  EXPECT_FALSE(off.state.active);
  EXPECT_EQ(off.state.epoch, 2u);

  auto on = keep(enable(input(), state_, "a"));
  EXPECT_EQ(on.state.active, "a");
  EXPECT_EQ(on.state.epoch, 3u);
  EXPECT_TRUE(on.state.fenced.empty());
  EXPECT_TRUE(on.state.disabled.empty());
}

TEST_F(PolicyTest, NothingEligibleLeavesNoActiveAndSaysWhyForEachBackend) {
  report(down("a", "connection refused"));
  report(standby("b"));
  state_.disabled = {"c"};

  auto d = advance(failover_.startup_wait);

  EXPECT_FALSE(d.deciding);
  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(d.state.epoch, 0u);
  EXPECT_TRUE(d.switches.empty());
  ASSERT_EQ(d.backends.size(), 3u);
  EXPECT_EQ(d.backends[0].why_not, "down: connection refused");
  EXPECT_EQ(d.backends[1].why_not, "standby (target_session_attrs=read-write)");
  EXPECT_EQ(d.backends[2].why_not, "disabled by operator");
  for (const auto& v : d.backends) {
    EXPECT_FALSE(v.is_eligible()) << v.name;
  }
}

TEST_F(PolicyTest, LosingTheLastEligibleBackendSwitchesToNoneAndGrowsTheEpoch) {
  start_on_a();
  report(down("a", "timeout after 400ms"));
  report(down("b"));
  report(down("c", ""));

  auto d = advance(1s);

  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(d.state.epoch, 2u);
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].from, "a");
  EXPECT_EQ(d.switches[0].to, std::nullopt);
  EXPECT_EQ(verdict_of(d, "a").why_not, "down: timeout after 400ms");
  EXPECT_EQ(verdict_of(d, "c").why_not, "down");
}

TEST_F(PolicyTest, JudgeAllGivesOneVerdictPerBackendInConfigurationOrder) {
  report(down("a"));
  report(standby("b"));
  policy_state state;
  state.fenced = {"c"};

  auto verdicts = judge_all(input(), state);

  ASSERT_EQ(verdicts.size(), 3u);
  EXPECT_EQ(verdicts[0].name, "a");
  EXPECT_EQ(verdicts[0].status, route_status::down);
  EXPECT_EQ(verdicts[1].name, "b");
  EXPECT_EQ(verdicts[1].status, route_status::role);
  EXPECT_EQ(verdicts[2].name, "c");
  EXPECT_EQ(verdicts[2].status, route_status::fenced);
  EXPECT_TRUE(verdicts[2].is_clean());

  // A disabled backend reports that first, whatever its health says.
  state.disabled = {"a"};
  EXPECT_EQ(judge_all(input(), state)[0].status, route_status::disabled);
}

// ---- Promotion ---------------------------------------------------------------------------

// a is the primary, b its standby with promote = "sql", c an independent writable copy.
class PolicyPromotionTest : public PolicyTest {
 protected:
  PolicyPromotionTest() {
    backends_[1].promote = config::promote_method::sql;
    backends_[1].promote_timeout = 30s;
    report(standby("b"));
  }

  // a is lost: the switch goes to none in epoch 2 and b's promotion is requested.
  policy_decision lose_a() {
    start_on_a();
    report(down("a"));
    return advance(1s);
  }
};

TEST_F(PolicyPromotionTest, PromotesTheNextStandbyAndHoldsEverythingRankedAfterIt) {
  auto d = lose_a();

  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(d.state.epoch, 2u);
  ASSERT_EQ(d.switches.size(), 1u);
  EXPECT_EQ(d.switches[0].from, "a");
  EXPECT_EQ(d.switches[0].to, std::nullopt);
  ASSERT_TRUE(d.promote);
  EXPECT_EQ(d.promote->backend, "b");
  EXPECT_EQ(d.promote->epoch, 2u);
  EXPECT_EQ(verdict_of(d, "b").status, route_status::promoting);
  EXPECT_TRUE(verdict_of(d, "c").is_eligible());
  EXPECT_EQ(d.next_wakeup, now_ + 30s);

  // c stays unused and the promotion is not asked for again while it runs.
  for (int i = 0; i < 10; ++i) {
    auto waiting = advance(2s);
    ASSERT_FALSE(waiting.state.active) << i;
    ASSERT_FALSE(waiting.promote) << i;
    ASSERT_TRUE(waiting.switches.empty()) << i;
  }

  report(primary("b"));
  auto promoted = advance(1s);
  EXPECT_EQ(promoted.state.active, "b");
  EXPECT_EQ(promoted.state.epoch, 3u);
  EXPECT_FALSE(promoted.state.promoting);
  ASSERT_EQ(promoted.switches.size(), 1u);
  EXPECT_EQ(promoted.switches[0].from, std::nullopt);
  EXPECT_EQ(promoted.switches[0].to, "b");
  EXPECT_EQ(promoted.switches[0].reason, "promoted");
  EXPECT_EQ(promoted.state.fenced, std::set<std::string>{"a"});
}

TEST_F(PolicyPromotionTest, PromotionTimeoutHandsOverToTheNextEligibleBackend) {
  lose_a();
  auto lost_at = now_;

  auto before = advance(30s - 1s);
  EXPECT_FALSE(before.state.active);

  now_ = lost_at + 30s;
  auto after = evaluate_now();
  EXPECT_EQ(after.state.active, "c");
  EXPECT_EQ(after.state.epoch, 3u);
  EXPECT_FALSE(after.promote);
  EXPECT_FALSE(after.state.promoting);
  EXPECT_EQ(verdict_of(after, "b").status, route_status::role);
  // b's promotion may still complete: it is fenced along with a.
  EXPECT_EQ(after.state.fenced, (std::set<std::string>{"a", "b"}));
}

TEST_F(PolicyPromotionTest, PromotionIsRequestedAtMostOncePerEpoch) {
  report(down("c"));
  auto lost = lose_a();
  ASSERT_TRUE(lost.promote);

  auto d = advance(31s);
  EXPECT_FALSE(d.state.promoting);
  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(d.state.epoch, 2u);
  for (int i = 0; i < 10; ++i) {
    auto again = advance(10s);
    ASSERT_FALSE(again.promote) << i;
    ASSERT_EQ(again.state.epoch, 2u);
  }
  EXPECT_EQ(state_.promoted_epoch, 2u);
}

TEST_F(PolicyPromotionTest,
       BetterBackendReturningDuringPromotionTakesOverAndFencesThePromotingOne) {
  lose_a();

  report(primary("a"));
  auto d = advance(1s);

  EXPECT_EQ(d.state.active, "a");
  EXPECT_EQ(d.state.epoch, 3u);
  EXPECT_FALSE(d.state.promoting);
  EXPECT_EQ(d.state.fenced, std::set<std::string>{"b"});
}

TEST_F(PolicyPromotionTest, AbandonedPromotionThatCompletesLaterNeverTakesWrites) {
  // A slow promote_command outlives the promotion the router gave up on: a came back first
  // and took writes, then b left recovery anyway. When a dies again, b must not be chosen.
  lose_a();
  report(primary("a"));
  advance(1s);
  report(primary("b"));
  advance(10s);

  report(down("c"));
  report(down("a"));
  auto d = advance(1s);

  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(verdict_of(d, "b").status, route_status::fenced);
}

TEST_F(PolicyPromotionTest, DisablingThePromotingBackendStopsHoldingTheOthers) {
  lose_a();
  ASSERT_EQ(state_.promoting, "b");

  auto d = keep(disable(input(), state_, "b"));

  EXPECT_EQ(d.state.active, "c");
  EXPECT_EQ(d.state.epoch, 3u);
  EXPECT_FALSE(d.state.promoting);
  EXPECT_FALSE(d.promote);
  EXPECT_EQ(verdict_of(d, "b").status, route_status::disabled);
  EXPECT_EQ(d.state.fenced, (std::set<std::string>{"a", "b"}));
}

TEST_F(PolicyPromotionTest, StandbyWithoutAPromotionMethodIsPassedOver) {
  backends_[1].promote = config::promote_method::none;

  auto d = lose_a();

  EXPECT_EQ(d.state.active, "c");
  EXPECT_FALSE(d.promote);
}

TEST_F(PolicyPromotionTest, PromoteCommandCountsAsAPromotionMethod) {
  backends_[1].promote = config::promote_method::none;
  backends_[1].promote_command = "gcloud sql instances promote-replica b";

  auto d = lose_a();

  EXPECT_FALSE(d.state.active);
  ASSERT_TRUE(d.promote);
  EXPECT_EQ(d.promote->backend, "b");
}

TEST_F(PolicyPromotionTest, NoPromotionWhenAnEligibleBackendRanksBeforeTheStandby) {
  backends_[1].priority = 3;
  backends_[2].priority = 2;
  std::swap(backends_[1], backends_[2]);

  auto d = lose_a();

  EXPECT_EQ(d.state.active, "c");
  EXPECT_FALSE(d.promote);
}

TEST_F(PolicyPromotionTest, StandbyThatComesUpAfterTheLossIsPromotedInTheSameEpoch) {
  report(down("b"));
  report(down("c"));
  auto lost = lose_a();
  EXPECT_FALSE(lost.promote);
  EXPECT_EQ(lost.state.epoch, 2u);

  report(standby("b"));
  auto d = advance(1s);

  ASSERT_TRUE(d.promote);
  EXPECT_EQ(d.promote->backend, "b");
  EXPECT_EQ(d.promote->epoch, 2u);
  EXPECT_EQ(d.state.epoch, 2u);
  EXPECT_TRUE(d.switches.empty());
}

// ---- Flapping and the epoch -----------------------------------------------------------------

TEST_F(PolicyTest, UnchangedHealthNeverSwitches) {
  fail_over_to_b();

  for (int i = 0; i < 100; ++i) {
    auto d = advance(250ms);
    ASSERT_TRUE(d.switches.empty()) << i;
    ASSERT_EQ(d.state.epoch, 2u);
    ASSERT_EQ(d.state.active, "b");
  }
}

TEST_F(PolicyTest, FlappingFencedBackendCausesNoSwitches) {
  fail_over_to_b();

  for (int i = 0; i < 50; ++i) {
    report(i % 2 == 0 ? primary("a") : down("a"));
    auto d = advance(500ms);
    ASSERT_TRUE(d.switches.empty()) << i;
  }
  EXPECT_EQ(state_.epoch, 2u);
  EXPECT_EQ(state_.active, "b");
}

TEST_F(PolicyTest, FlappingBackendNeverFailsBackAutomatically) {
  failover_.failback = config::failback_policy::automatic;
  failover_.failback_after = 30s;
  fail_over_to_b();

  // Up for 25s, down for a moment, over and over: never stable for failback_after.
  for (int i = 0; i < 20; ++i) {
    report(primary("a"));
    for (int second = 0; second < 25; ++second) {
      ASSERT_TRUE(advance(1s).switches.empty()) << i << "/" << second;
    }
    report(down("a"));
    ASSERT_TRUE(advance(1s).switches.empty()) << i;
  }
  EXPECT_EQ(state_.active, "b");
  EXPECT_EQ(state_.epoch, 2u);

  report(primary("a"));
  advance(1s);
  auto stable = advance(30s);
  EXPECT_EQ(stable.state.active, "a");
  EXPECT_EQ(stable.switches.size(), 1u);
}

TEST_F(PolicyTest, FailedProbesBelowFallDoNotSwitch) {
  start_on_a();

  // The state machine still says up: single failed probes are its business, not the policy's.
  for (int i = 0; i < 20; ++i) {
    auto h = primary("a");
    h.consecutive_failures = 1 + static_cast<std::uint32_t>(i % 2);
    h.failed_probes = static_cast<std::uint64_t>(i + 1);
    h.last_error = "timeout after 400ms";
    report(h);
    auto d = advance(250ms);
    ASSERT_TRUE(d.switches.empty()) << i;
    ASSERT_TRUE(verdict_of(d, "a").is_eligible()) << i;
  }
  EXPECT_EQ(state_.active, "a");
  EXPECT_EQ(state_.epoch, 1u);
}

TEST_F(PolicyTest, RestartingFailbackClocksDelaysFailback) {
  failover_.failback = config::failback_policy::automatic;
  failover_.failback_after = 30s;
  fail_over_to_b();
  report(primary("a"));
  advance(1s);
  advance(20s);

  // A reload at this point restarts every clock: a needs another 30s.
  restart_failback_clocks(state_, now_);
  EXPECT_EQ(state_.clean_since.at("a"), now_);
  EXPECT_EQ(advance(29s).state.active, "b");
  EXPECT_EQ(advance(1s).state.active, "a");
}

TEST_F(PolicyTest, RefusedOperatorActionsLeaveTheStateAlone) {
  fail_over_to_b();
  report(down("c"));
  advance(1s);
  auto before = state_;

  auto unknown = switchover(input(), state_, "nope", "");
  auto active = switchover(input(), state_, "b", "");
  auto ineligible = switchover(input(), state_, "c", "");
  auto missing = disable(input(), state_, "nope");

  for (const auto* d : {&unknown, &active, &ineligible, &missing}) {
    EXPECT_NE(d->error, "");
    EXPECT_TRUE(d->switches.empty());
    EXPECT_EQ(d->state.epoch, before.epoch);
    EXPECT_EQ(d->state.active, before.active);
    EXPECT_EQ(d->state.fenced, before.fenced);
  }
  EXPECT_NE(ineligible.error.find("down"), std::string::npos) << ineligible.error;
}

TEST_F(PolicyTest, SwitchoverIsRefusedBeforeTheFirstChoice) {
  view_.first_round_complete = false;

  auto d = switchover(policy_input{backends_, failover_, &view_, t0 + 1s}, state_, "b", "");

  EXPECT_NE(d.error, "");
  EXPECT_FALSE(d.state.active);
  EXPECT_EQ(d.state.epoch, 0u);
}

// Random health changes, operator actions and time steps under both failback policies: the
// epoch never decreases, grows by exactly one per switch, and every decision obeys the rules
// that hold at each moment.
TEST_F(PolicyTest, EpochNeverDecreasesOverRandomHealthChanges) {
  backends_[1].promote = config::promote_method::sql;
  backends_[1].promote_timeout = 5s;
  const std::vector<std::string> names = {"a", "b", "c"};
  auto failbacks = {config::failback_policy::manual, config::failback_policy::automatic};

  for (auto failback : failbacks) {
    failover_.failback = failback;
    failover_.failback_after = 10s;
    bool is_manual = failback == config::failback_policy::manual;
    state_ = policy_state{};
    state_.started_at = now_;
    std::mt19937 random(is_manual ? 7 : 11);
    std::set<std::uint64_t> promoted_epochs;
    std::uint64_t switches = 0;

    for (int step = 0; step < 4000; ++step) {
      SCOPED_TRACE(::testing::Message() << "step " << step << (is_manual ? " manual" : " auto"));
      const auto& name = names[random() % names.size()];
      switch (random() % 8) {
        case 0:
        case 1:
          report(primary(name));
          break;
        case 2:
          report(down(name));
          break;
        case 3:
          report(standby(name));
          break;
        case 4:
          report(random() % 2 == 0 ? read_only(name) : not_ready(name, "lagging"));
          break;
        default:
          break;
      }
      now_ += std::chrono::milliseconds(random() % 4000);

      auto act = action::evaluate;
      policy_decision d;
      switch (random() % 40) {
        case 0:
          act = action::switchover;
          d = switchover(input(), state_, name, "random");
          break;
        case 1:
          act = action::disable;
          d = disable(input(), state_, name);
          break;
        case 2:
          act = action::enable;
          d = enable(input(), state_, name);
          break;
        default:
          d = evaluate(input(), state_);
          break;
      }
      const auto before = state_;
      const auto& s = d.state;
      if (!d.error.empty()) {
        ASSERT_NE(act, action::evaluate);
        ASSERT_EQ(s.epoch, before.epoch);
        ASSERT_EQ(s.active, before.active);
        continue;
      }

      ASSERT_GE(s.epoch, before.epoch);
      ASSERT_EQ(s.epoch - before.epoch, d.switches.size());
      for (std::size_t i = 0; i < d.switches.size(); ++i) {
        ASSERT_EQ(d.switches[i].epoch, before.epoch + i + 1);
        if (is_manual) {
          ASSERT_NE(d.switches[i].reason, "failback");
        }
      }
      switches += d.switches.size();

      if (s.active) {
        ASSERT_TRUE(verdict_of(d, *s.active).is_eligible()) << *s.active;
        ASSERT_FALSE(s.fenced.contains(*s.active));
        ASSERT_FALSE(s.disabled.contains(*s.active));
      } else if (!s.promoting) {
        for (const auto& v : d.backends) {
          ASSERT_FALSE(v.is_eligible()) << v.name << " is eligible but nothing is active";
        }
      } else {
        // While a promotion runs, nothing ranked after the promoted backend is chosen and
        // anything eligible ranked before it would have been.
        for (const auto& b : backends_) {
          if (b.name != *s.promoting && verdict_of(d, b.name).is_eligible()) {
            ASSERT_GT(b.priority, backends_[1].priority) << b.name;
          }
        }
      }

      if (d.promote) {
        ASSERT_TRUE(promoted_epochs.insert(d.promote->epoch).second)
            << "second promotion in epoch " << d.promote->epoch;
      }

      // Under manual failback only an operator's enable or switchover to it unfences.
      if (is_manual) {
        for (const auto& fenced : before.fenced) {
          bool by_operator = (act == action::enable || act == action::switchover) && fenced == name;
          ASSERT_TRUE(s.fenced.contains(fenced) || by_operator) << fenced << " unfenced";
        }
      }
      state_ = s;

      // Evaluating again with nothing changed changes nothing.
      auto again = evaluate(input(), state_);
      ASSERT_TRUE(again.switches.empty());
      ASSERT_EQ(again.state.epoch, state_.epoch);
      ASSERT_EQ(again.state.active, state_.active);
      ASSERT_EQ(again.state.fenced, state_.fenced);
      ASSERT_FALSE(again.promote);
    }
    // The walk must have exercised the rules, not idled.
    EXPECT_GT(switches, 100u);
    EXPECT_FALSE(promoted_epochs.empty());
  }
}

// The configuration loader's values drive the policy the same way as hand-filled ones.
TEST(PolicyConfigTest, LoadedConfigurationDrivesThePolicy) {
  auto cfg = config::load_string(R"(
[proxy]
auth = "passthrough"
[failover]
failback = "auto"
failback_after = "5s"
startup_wait = "1s"
[[backend]]
name = "replica"
priority = 2
url = "postgresql://app@127.0.0.2:5432/app?sslmode=disable"
promote = "sql"
promote_timeout = "20s"
[[backend]]
name = "main"
priority = 1
url = "postgresql://app@127.0.0.1:5432/app?sslmode=disable"
)",
                                 "test.toml");
  ASSERT_EQ(cfg.backends.size(), 2u);
  ASSERT_EQ(cfg.backends[0].name, "main");

  health::health_view view;
  view.backends = {primary("main"), standby("replica")};
  policy_state state;
  state.started_at = t0;

  auto waiting = evaluate(policy_input{cfg.backends, cfg.failover, &view, t0 + 999ms}, state);
  EXPECT_TRUE(waiting.deciding);
  auto chosen = evaluate(policy_input{cfg.backends, cfg.failover, &view, t0 + 1s}, state);
  EXPECT_EQ(chosen.state.active, "main");

  view.backends[0] = down("main");
  auto lost = evaluate(policy_input{cfg.backends, cfg.failover, &view, t0 + 2s}, chosen.state);
  ASSERT_TRUE(lost.promote);
  EXPECT_EQ(lost.promote->backend, "replica");
  EXPECT_EQ(lost.state.promote_deadline, t0 + 2s + 20s);
}

}  // namespace
}  // namespace pgf::router
