// The metrics registry: the text a scrape returns, the worker counters folded into it, the
// on-demand server-connection census, and backends added and removed by a reload.
#include "proxy/metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace pgf::metrics {
namespace {

// The value of the series whose line starts with `series` (name and labels, exactly as
// serialized), or -1 when there is none.
double value_of(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(pos + series.size() + 2));
}

TEST(MetricsTest, WorkerCountersAreFoldedIntoTheTotalsAtEachScrape) {
  metrics m(2, {"a"});
  m.worker(0).add_bytes_received(100);
  m.worker(1).add_bytes_received(23);
  m.worker(0).add_bytes_sent(7);
  m.worker(1).count_client_accepted();
  m.worker(1).enter(client_state::login);
  m.worker(1).move(client_state::login, client_state::active);
  auto text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_received_bytes_total"), 123);
  EXPECT_EQ(value_of(text, "pgfailover_sent_bytes_total"), 7);
  EXPECT_EQ(value_of(text, "pgfailover_client_connections_total"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_client_connections{state=\"active\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_client_connections{state=\"login\"}"), 0);

  // A second scrape adds only what is new.
  m.worker(0).add_bytes_received(1);
  m.worker(1).leave(client_state::active);
  text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_received_bytes_total"), 124);
  EXPECT_EQ(value_of(text, "pgfailover_client_connections{state=\"active\"}"), 0);
}

TEST(MetricsTest, ServerConnectionsComeFromTheCensusAndMissingBackendsReadZero) {
  metrics m(1, {"a", "b"});
  std::map<std::string, std::array<std::uint32_t, server_state_count>, std::less<>> counts;
  counts["a"] = {1, 5, 0};
  m.set_server_connections(counts);
  auto text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_server_connections{backend=\"a\",state=\"active\"}"), 5);
  EXPECT_EQ(value_of(text, "pgfailover_server_connections{backend=\"a\",state=\"login\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_server_connections{backend=\"b\",state=\"active\"}"), 0);

  m.set_server_connections({});
  text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_server_connections{backend=\"a\",state=\"active\"}"), 0);
}

TEST(MetricsTest, BackendsComeAndGoWithAReloadAndUnknownNamesAreIgnored) {
  metrics m(1, {"a"});
  m.set_backend_health("a", health::backend_state::up, health::backend_role::primary);
  m.add_backend("c");
  m.set_backend_health("c", health::backend_state::down, health::backend_role::unknown);
  m.set_backend_health("nope", health::backend_state::up, health::backend_role::primary);
  m.observe_probe("c", seconds(0.002));
  auto text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_backend_up{backend=\"a\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_backend_up{backend=\"c\"}"), 0);
  EXPECT_EQ(value_of(text, "pgfailover_backend_state{backend=\"c\",state=\"down\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_backend_role{backend=\"a\",role=\"primary\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_probe_duration_seconds_count{backend=\"c\"}"), 1);
  EXPECT_EQ(text.find("backend=\"nope\""), std::string::npos);

  m.remove_backend("c");
  text = m.serialize();
  EXPECT_EQ(text.find("backend=\"c\""), std::string::npos);
  EXPECT_EQ(m.backend_names(), std::vector<std::string>{"a"});
}

TEST(MetricsTest, RoutingFailoversErrorsAndHooks) {
  metrics m(1, {"a", "b"});
  m.set_active_backend("b");
  m.set_epoch(4);
  m.set_backend_routing("a", true, false);
  m.count_failover("a", "b", "switchover");
  m.count_failover("a", "b", "switchover");
  m.count_client_error("57P01");
  m.count_client_error("08006");
  m.count_client_error("22P02");
  m.count_client_error("bad");
  m.fold_hook_runs({2, 1, 0});
  m.fold_hook_runs({3, 1, 0});
  m.count_admin_request("/status", 200);
  auto text = m.serialize();
  EXPECT_EQ(value_of(text, "pgfailover_active_backend{backend=\"b\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_active_backend{backend=\"a\"}"), 0);
  EXPECT_EQ(value_of(text, "pgfailover_epoch"), 4);
  EXPECT_EQ(value_of(text, "pgfailover_backend_fenced{backend=\"a\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_backend_disabled{backend=\"a\"}"), 0);
  EXPECT_EQ(value_of(text, "pgfailover_failovers_total{from=\"a\",reason=\"switchover\",to=\"b\"}"),
            2);
  EXPECT_EQ(value_of(text, "pgfailover_errors_total{sqlstate_class=\"57\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_errors_total{sqlstate_class=\"08\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_errors_total{sqlstate_class=\"22\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_errors_total{sqlstate_class=\"other\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_hook_runs_total{result=\"ok\"}"), 3);
  EXPECT_EQ(value_of(text, "pgfailover_hook_runs_total{result=\"failed\"}"), 1);
  EXPECT_EQ(value_of(text, "pgfailover_admin_requests_total{code=\"200\",path=\"/status\"}"), 1);
}

}  // namespace
}  // namespace pgf::metrics
