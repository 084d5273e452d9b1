// The router as the admin API drives it: operator pauses and drain holds, planned switches
// that close old sessions at once, refusals with their kind. A real control io_context runs
// the strand; the health views are built by hand.
#include "proxy/router/router.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "proxy/config/config.hpp"

namespace pgf::router {
namespace {

namespace net = boost::asio;
namespace fs = std::filesystem;

std::shared_ptr<const config::config> two_backends() {
  auto cfg = config::load_string(R"(
[proxy]
auth = "passthrough"
[failover]
startup_wait = "0s"
[[backend]]
name = "a"
priority = 1
url = "postgresql://app@127.0.0.1:5432/app?sslmode=disable"
[[backend]]
name = "b"
priority = 2
url = "postgresql://app@127.0.0.1:5433/app?sslmode=disable"
)",
                                 "router_test.toml");
  return std::make_shared<const config::config>(std::move(cfg));
}

health::health_view_ptr both_up() {
  auto view = std::make_shared<health::health_view>();
  view->generation = 1;
  view->first_round_complete = true;
  for (const char* name : {"a", "b"}) {
    health::backend_health h;
    h.name = name;
    h.state = health::backend_state::up;
    h.role = health::backend_role::primary;
    view->backends.push_back(h);
  }
  return view;
}

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pgf-router-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    router_ = std::make_unique<router>(io_, two_backends(), (dir_ / "state").string());
    router_->start();
    router_->on_health(both_up());
    settle();
    ASSERT_TRUE(router_->view()->active.has_value());
    ASSERT_EQ(router_->view()->active_backend()->name, "a");
  }
  void TearDown() override {
    router_->stop();
    settle();
    router_.reset();
    fs::remove_all(dir_);
  }
  // Runs everything posted so far.
  void settle() {
    io_.restart();
    io_.poll();
  }
  template <typename Future>
  auto get(Future f) {
    settle();
    return f.get();
  }

  net::io_context io_;
  fs::path dir_;
  std::unique_ptr<router> router_;
};

TEST_F(RouterTest, AHoldPausesUntilReleasedAndSaysWhy) {
  get(router_->async_hold(true, "a switchover to b is in progress", "b", net::use_future));
  EXPECT_TRUE(router_->view()->paused);
  EXPECT_EQ(router_->view()->pause_reason, "a switchover to b is in progress");
  // New sessions may log in to b ahead of the switch, as part of the next epoch.
  ASSERT_TRUE(router_->view()->staged.has_value());
  EXPECT_EQ(*router_->view()->staged, 1u);
  EXPECT_EQ(router_->view()->staged_epoch, router_->view()->epoch + 1);
  get(router_->async_hold(false, "", std::nullopt, net::use_future));
  EXPECT_FALSE(router_->view()->paused);
  EXPECT_EQ(router_->view()->pause_reason, "");
  EXPECT_FALSE(router_->view()->staged.has_value());
}

TEST_F(RouterTest, ReleasingAHoldKeepsTheOperatorsPause) {
  get(router_->async_hold(true, "draining", std::nullopt, net::use_future));
  auto paused = get(router_->async_pause({"admin:test", "migration 42"}, net::use_future));
  EXPECT_TRUE(paused.changed);
  get(router_->async_hold(false, "", std::nullopt, net::use_future));
  auto view = router_->view();
  EXPECT_TRUE(view->paused);
  EXPECT_EQ(view->pause_reason, "traffic is paused by admin:test: migration 42");

  auto again = get(router_->async_pause({"admin:test", ""}, net::use_future));
  EXPECT_TRUE(again.is_ok);
  EXPECT_FALSE(again.changed);
  auto resumed = get(router_->async_resume({"admin:test", ""}, net::use_future));
  EXPECT_TRUE(resumed.changed);
  EXPECT_FALSE(router_->view()->paused);
}

TEST_F(RouterTest, ADrainedSwitchoverIsMarkedSoOldSessionsCloseAtOnce) {
  switchover_request request{
      .to = "b", .reason = "maintenance", .force = false, .who = "admin:test", .drained = true};
  auto r = get(router_->async_switchover(request, net::use_future));
  ASSERT_TRUE(r.is_ok) << r.error;
  auto view = router_->view();
  EXPECT_EQ(view->active_backend()->name, "b");
  EXPECT_EQ(view->epoch, r.epoch);
  EXPECT_TRUE(view->drained);
  EXPECT_EQ(view->switch_reason, "switchover");
}

TEST_F(RouterTest, ASwitchTheRouterMakesItselfIsNotDrained) {
  backend_request request{.name = "a", .who = "admin:test", .reason = "repair"};
  auto r = get(router_->async_disable(request, net::use_future));
  ASSERT_TRUE(r.is_ok) << r.error;
  EXPECT_EQ(router_->view()->active_backend()->name, "b");
  EXPECT_FALSE(router_->view()->drained);
}

TEST_F(RouterTest, RefusalsSayWhetherTheBackendIsUnknownOrTheMoveIsRefused) {
  auto unknown = get(router_->async_switchover(
      {.to = "nope", .reason = "", .force = false, .who = "t"}, net::use_future));
  EXPECT_FALSE(unknown.is_ok);
  EXPECT_EQ(unknown.failure, action_failure::unknown_backend);

  auto active = get(router_->async_switchover({.to = "a", .reason = "", .force = false, .who = "t"},
                                              net::use_future));
  EXPECT_FALSE(active.is_ok);
  EXPECT_EQ(active.failure, action_failure::refused);
  EXPECT_NE(active.error.find("already the active backend"), std::string::npos);

  auto disable =
      get(router_->async_disable({.name = "nope", .who = "t", .reason = ""}, net::use_future));
  EXPECT_EQ(disable.failure, action_failure::unknown_backend);
  EXPECT_EQ(router_->view()->epoch, 1u);
}

TEST_F(RouterTest, EverySwitchReachesTheSwitchObserversWithWhoAsked) {
  std::vector<std::string> seen;
  // Observers register before start(); a second router on the same state file does.
  router_->stop();
  settle();
  router_.reset();
  router_ = std::make_unique<router>(io_, two_backends(), (dir_ / "state").string());
  router_->on_switch([&seen](const switch_record& s, const std::string& who) {
    seen.push_back(s.from.value_or("none") + "->" + s.to.value_or("none") + " " + s.reason + " " +
                   who);
  });
  router_->start();
  router_->on_health(both_up());
  settle();
  ASSERT_EQ(router_->view()->active_backend()->name, "a");
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().substr(0, 4), "none");  // the start's own switches were seen too
  seen.clear();
  get(router_->async_switchover({.to = "b", .reason = "", .force = false, .who = "admin:x"},
                                net::use_future));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "a->b switchover admin:x");
}

}  // namespace
}  // namespace pgf::router
