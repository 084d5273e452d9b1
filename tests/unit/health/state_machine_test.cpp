// The per-backend health state machine: thresholds, what a probe records, and when the
// state (and its `since`) changes. Pure: outcomes are built by hand, time is given.
#include "health/state_machine.hpp"

#include <gtest/gtest.h>

namespace pgf::health {
namespace {

using namespace std::chrono_literals;

const clock::time_point t0 = clock::time_point{} + 1h;

probe_outcome success(backend_role role = backend_role::primary) {
  probe_outcome outcome;
  outcome.is_alive = true;
  outcome.role = role;
  outcome.latency = 250us;
  return outcome;
}

probe_outcome failure(std::string reason = "connection refused") {
  probe_outcome outcome;
  outcome.is_alive = false;
  outcome.reason = std::move(reason);
  return outcome;
}

TEST(StateMachineTest, StartsUnknownSinceConstruction) {
  state_machine machine("pg-1", 2, 2, t0);

  EXPECT_EQ(machine.health().name, "pg-1");
  EXPECT_EQ(machine.health().state, backend_state::unknown);
  EXPECT_EQ(machine.health().since, t0);
  EXPECT_EQ(machine.health().probes, 0u);
}

TEST(StateMachineTest, FirstSuccessFromUnknownGoesUpAtOnce) {
  state_machine machine("pg-1", 3, 3, t0);

  EXPECT_TRUE(machine.record(success(), t0 + 1s));

  EXPECT_EQ(machine.health().state, backend_state::up);
  EXPECT_EQ(machine.health().since, t0 + 1s);
  EXPECT_EQ(machine.health().consecutive_successes, 1u);
}

TEST(StateMachineTest, FirstFailureFromUnknownGoesDownAtOnce) {
  state_machine machine("pg-1", 3, 3, t0);

  EXPECT_TRUE(machine.record(failure(), t0 + 1s));

  EXPECT_EQ(machine.health().state, backend_state::down);
  EXPECT_EQ(machine.health().last_error, "connection refused");
  EXPECT_EQ(machine.health().consecutive_failures, 1u);
}

TEST(StateMachineTest, UpGoesDownOnlyAfterFallConsecutiveFailures) {
  state_machine machine("pg-1", 3, 2, t0);
  machine.record(success(), t0);

  EXPECT_FALSE(machine.record(failure(), t0 + 1s));
  EXPECT_FALSE(machine.record(failure(), t0 + 2s));
  EXPECT_EQ(machine.health().state, backend_state::up);
  EXPECT_EQ(machine.health().since, t0);

  EXPECT_TRUE(machine.record(failure("timeout after 400ms connecting"), t0 + 3s));
  EXPECT_EQ(machine.health().state, backend_state::down);
  EXPECT_EQ(machine.health().since, t0 + 3s);
  EXPECT_EQ(machine.health().last_error, "timeout after 400ms connecting");
}

TEST(StateMachineTest, SuccessBetweenFailuresRestartsTheFallCount) {
  state_machine machine("pg-1", 2, 2, t0);
  machine.record(success(), t0);

  machine.record(failure(), t0 + 1s);
  machine.record(success(), t0 + 2s);
  EXPECT_FALSE(machine.record(failure(), t0 + 3s));

  EXPECT_EQ(machine.health().state, backend_state::up);
  EXPECT_EQ(machine.health().consecutive_failures, 1u);
}

TEST(StateMachineTest, FailingSinceMarksTheFirstOfARunOfFailures) {
  state_machine machine("pg-1", 3, 2, t0);
  machine.record(success(), t0);
  EXPECT_EQ(machine.health().failing_since, clock::time_point{});

  machine.record(failure(), t0 + 1s);
  machine.record(failure(), t0 + 2s);
  machine.record(failure(), t0 + 3s);
  EXPECT_EQ(machine.health().state, backend_state::down);
  EXPECT_EQ(machine.health().failing_since, t0 + 1s);

  machine.record(success(), t0 + 4s);
  EXPECT_EQ(machine.health().failing_since, clock::time_point{});
  machine.record(failure(), t0 + 5s);
  EXPECT_EQ(machine.health().failing_since, t0 + 5s);
}

TEST(StateMachineTest, DownComesUpOnlyAfterRiseConsecutiveSuccesses) {
  state_machine machine("pg-1", 2, 3, t0);
  machine.record(failure(), t0);

  EXPECT_FALSE(machine.record(success(), t0 + 1s));
  EXPECT_FALSE(machine.record(success(), t0 + 2s));
  EXPECT_EQ(machine.health().state, backend_state::down);

  EXPECT_TRUE(machine.record(success(), t0 + 3s));
  EXPECT_EQ(machine.health().state, backend_state::up);
  EXPECT_EQ(machine.health().since, t0 + 3s);
}

TEST(StateMachineTest, FailureBetweenSuccessesRestartsTheRiseCount) {
  state_machine machine("pg-1", 2, 2, t0);
  machine.record(failure(), t0);

  machine.record(success(), t0 + 1s);
  machine.record(failure(), t0 + 2s);
  EXPECT_FALSE(machine.record(success(), t0 + 3s));
  EXPECT_EQ(machine.health().state, backend_state::down);

  EXPECT_TRUE(machine.record(success(), t0 + 4s));
  EXPECT_EQ(machine.health().state, backend_state::up);
}

TEST(StateMachineTest, StayingDownKeepsSinceOfTheFall) {
  state_machine machine("pg-1", 1, 2, t0);
  machine.record(failure(), t0 + 1s);

  EXPECT_FALSE(machine.record(failure("connection reset"), t0 + 2s));

  EXPECT_EQ(machine.health().since, t0 + 1s);
  EXPECT_EQ(machine.health().last_error, "connection reset");
}

TEST(StateMachineTest, SuccessRecordsRoleReadOnlyReadyAndLatency) {
  state_machine machine("pg-1", 2, 2, t0);
  probe_outcome outcome = success(backend_role::standby);
  outcome.read_only = true;
  outcome.latency = 1234us;

  machine.record(outcome, t0);

  EXPECT_EQ(machine.health().role, backend_role::standby);
  EXPECT_TRUE(machine.health().read_only);
  EXPECT_TRUE(machine.health().ready);
  EXPECT_EQ(machine.health().latency, 1234us);
  EXPECT_EQ(machine.health().last_error, "");
}

TEST(StateMachineTest, RoleChangeIsSeenAtOnceWhileDown) {
  state_machine machine("pg-1", 1, 3, t0);
  machine.record(success(backend_role::standby), t0);
  machine.record(failure(), t0 + 1s);

  machine.record(success(backend_role::primary), t0 + 2s);

  EXPECT_EQ(machine.health().state, backend_state::down);
  EXPECT_EQ(machine.health().role, backend_role::primary);
}

TEST(StateMachineTest, FailureKeepsLastKnownRoleAndLatency) {
  state_machine machine("pg-1", 2, 2, t0);
  machine.record(success(backend_role::standby), t0);

  machine.record(failure(), t0 + 1s);

  EXPECT_EQ(machine.health().role, backend_role::standby);
  EXPECT_EQ(machine.health().latency, 250us);
}

TEST(StateMachineTest, SuccessClearsLastError) {
  state_machine machine("pg-1", 2, 2, t0);
  machine.record(success(), t0);
  machine.record(failure(), t0 + 1s);
  ASSERT_EQ(machine.health().last_error, "connection refused");

  machine.record(success(), t0 + 2s);

  EXPECT_EQ(machine.health().last_error, "");
}

TEST(StateMachineTest, NotReadyIsNotAFailure) {
  state_machine machine("pg-1", 1, 1, t0);
  probe_outcome outcome = success();
  outcome.ready = false;
  outcome.reason = "ready_query returned false";

  EXPECT_TRUE(machine.record(outcome, t0));
  EXPECT_FALSE(machine.record(outcome, t0 + 1s));

  EXPECT_EQ(machine.health().state, backend_state::up);
  EXPECT_FALSE(machine.health().ready);
  EXPECT_EQ(machine.health().last_error, "ready_query returned false");
  EXPECT_EQ(machine.health().consecutive_failures, 0u);
  EXPECT_EQ(machine.health().failed_probes, 0u);
}

TEST(StateMachineTest, CountsProbesAndFailedProbes) {
  state_machine machine("pg-1", 5, 5, t0);

  machine.record(success(), t0);
  machine.record(failure(), t0 + 1s);
  machine.record(failure(), t0 + 2s);
  machine.record(success(), t0 + 3s);

  EXPECT_EQ(machine.health().probes, 4u);
  EXPECT_EQ(machine.health().failed_probes, 2u);
  EXPECT_EQ(machine.health().consecutive_successes, 1u);
  EXPECT_EQ(machine.health().consecutive_failures, 0u);
}

TEST(StateMachineTest, ZeroThresholdsActAsOne) {
  state_machine machine("pg-1", 0, 0, t0);
  machine.record(success(), t0);

  EXPECT_TRUE(machine.record(failure(), t0 + 1s));
  EXPECT_TRUE(machine.record(success(), t0 + 2s));
}

TEST(StateMachineTest, NewThresholdsApplyToTheCountSoFar) {
  state_machine machine("pg-1", 5, 5, t0);
  machine.record(success(), t0);
  machine.record(failure(), t0 + 1s);
  machine.record(failure(), t0 + 2s);

  machine.set_thresholds(3, 5);

  EXPECT_TRUE(machine.record(failure(), t0 + 3s));
  EXPECT_EQ(machine.health().state, backend_state::down);
}

}  // namespace
}  // namespace pgf::health
