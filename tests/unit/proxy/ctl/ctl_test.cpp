// The parts of `pgfailover ctl` without I/O: the admin address, the timeout, the request
// each command makes, refusals, and report()'s output and exit codes.
#include "proxy/ctl/ctl.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace pgf::ctl {
namespace {

using namespace std::chrono_literals;
namespace http = boost::beast::http;

admin_address parsed(std::string_view text) {
  auto result = parse_admin_address(text);
  if (auto* problem = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << '"' << text << "\" refused: " << *problem;
    return {};
  }
  return std::get<admin_address>(result);
}

std::string refusal(std::string_view text) {
  auto result = parse_admin_address(text);
  if (auto* problem = std::get_if<std::string>(&result)) {
    return *problem;
  }
  return "accepted";
}

TEST(CtlAddressTest, ParsesHostAndPort) {
  auto address = parsed("127.0.0.1:6490");
  EXPECT_EQ(address.host, "127.0.0.1");
  EXPECT_EQ(address.port, 6490);
  address = parsed("admin.db.internal:7000");
  EXPECT_EQ(address.host, "admin.db.internal");
  EXPECT_EQ(address.port, 7000);
}

TEST(CtlAddressTest, AcceptsHttpScheme) {
  auto address = parsed("http://10.0.0.5:6481");
  EXPECT_EQ(address.host, "10.0.0.5");
  EXPECT_EQ(address.port, 6481);
  address = parsed("HTTP://10.0.0.5:6481/");
  EXPECT_EQ(address.host, "10.0.0.5");
  EXPECT_EQ(address.port, 6481);
}

TEST(CtlAddressTest, ParsesBracketedIpv6) {
  auto address = parsed("[::1]:6490");
  EXPECT_EQ(address.host, "::1");
  EXPECT_EQ(address.port, 6490);
  address = parsed("http://[fe80::1]:7000/");
  EXPECT_EQ(address.host, "fe80::1");
  EXPECT_EQ(address.port, 7000);
}

TEST(CtlAddressTest, MissingPortMeans6480) {
  EXPECT_EQ(parsed("localhost").port, 6480);
  EXPECT_EQ(parsed("localhost").host, "localhost");
  EXPECT_EQ(parsed("http://10.1.2.3").port, 6480);
  EXPECT_EQ(parsed("[::1]").host, "::1");
  EXPECT_EQ(parsed("[::1]").port, 6480);
}

TEST(CtlAddressTest, RefusesMalformedAddresses) {
  for (auto text : {"", ":6480", "http://", "host:", "host:0", "host:65536", "host:64k", "host:-1",
                    "[::1", "[::1]6480", "[]:6480", "host/path", "http://host:6480/status",
                    "user@host:6480", "host name:6480"}) {
    EXPECT_NE(refusal(text), "accepted") << '"' << text << '"';
  }
}

TEST(CtlAddressTest, ExplainsWhyAnAddressIsRefused) {
  EXPECT_EQ(refusal("::1"), "write an IPv6 address in brackets, as in \"[::1]:6480\"");
  EXPECT_EQ(refusal("https://host:6480"),
            "the admin API speaks plain HTTP; \"https://\" is not supported");
  EXPECT_EQ(refusal("host:99999"), "the port must be a number between 1 and 65535");
  EXPECT_EQ(refusal("[::1"), "an IPv6 address needs its closing ']', as in \"[::1]:6480\"");
}

TEST(CtlAddressTest, FormatsIpv6InBrackets) {
  EXPECT_EQ(format_admin_address({"::1", 6480}), "[::1]:6480");
  EXPECT_EQ(format_admin_address({"127.0.0.1", 6490}), "127.0.0.1:6490");
  EXPECT_EQ(format_admin_address(parsed(default_admin_address)), "127.0.0.1:6480");
}

TEST(CtlTimeoutTest, ParsesUnitsAndPlainSeconds) {
  EXPECT_EQ(parse_timeout("30s"), 30s);
  EXPECT_EQ(parse_timeout("500ms"), 500ms);
  EXPECT_EQ(parse_timeout("2m"), 2min);
  EXPECT_EQ(parse_timeout("45"), 45s);
  EXPECT_EQ(parse_timeout("1d"), 24h);
}

TEST(CtlTimeoutTest, RefusesZeroMalformedAndTooLong) {
  for (auto text : {"", "0", "0s", "0ms", "-1", "1.5", "30 s", "s", "30x", "2d", "86401",
                    "99999999999999999999"}) {
    EXPECT_EQ(parse_timeout(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(CtlTimeoutTest, FormatsWholeSecondsAsSeconds) {
  EXPECT_EQ(format_timeout(60s), "60s");
  EXPECT_EQ(format_timeout(1500ms), "1500ms");
}

TEST(CtlBackendNameTest, AcceptsOnlyConfigurationNames) {
  for (auto name : {"pg1", "pg-2", "db_main", "A9"}) {
    EXPECT_TRUE(is_backend_name(name)) << name;
  }
  for (auto name : {"", "pg 1", "pg/1", "pg.1", "pg%31", "pg?x", "../admin", "pg1\n"}) {
    EXPECT_FALSE(is_backend_name(name)) << '"' << name << '"';
  }
}

TEST(CtlRequestTest, ReadsWithGet) {
  auto status = make_request({.kind = command_kind::status});
  EXPECT_EQ(status.method, http::verb::get);
  EXPECT_EQ(status.path, "/status");
  EXPECT_EQ(status.body, "");
  EXPECT_EQ(describe_request(make_request({.kind = command_kind::events})), "GET /events");
}

TEST(CtlRequestTest, SwitchoverSendsTargetForceAndReason) {
  auto req = make_request({.kind = command_kind::switchover,
                           .backend = "pg2",
                           .force = true,
                           .reason = "kernel \"upgrade\""});
  EXPECT_EQ(req.method, http::verb::post);
  EXPECT_EQ(req.path, "/switchover");
  EXPECT_EQ(req.body, R"({"to":"pg2","force":true,"reason":"kernel \"upgrade\""})");

  auto plain = make_request({.kind = command_kind::switchover, .backend = "pg2"});
  EXPECT_EQ(plain.body, R"({"to":"pg2","force":false})");
}

TEST(CtlRequestTest, BackendActionsNameTheBackendInThePath) {
  auto disable =
      make_request({.kind = command_kind::disable, .backend = "pg-1", .reason = "disk swap"});
  EXPECT_EQ(describe_request(disable), "POST /backends/pg-1/disable");
  EXPECT_EQ(disable.body, R"({"reason":"disk swap"})");

  auto enable = make_request({.kind = command_kind::enable, .backend = "pg-1"});
  EXPECT_EQ(describe_request(enable), "POST /backends/pg-1/enable");
  EXPECT_EQ(enable.body, "");
}

TEST(CtlRequestTest, PauseResumeAndReload) {
  EXPECT_EQ(make_request({.kind = command_kind::pause, .reason = "maintenance"}).body,
            R"({"reason":"maintenance"})");
  EXPECT_EQ(describe_request(make_request({.kind = command_kind::resume})), "POST /resume");
  auto reload = make_request({.kind = command_kind::reload});
  EXPECT_EQ(describe_request(reload), "POST /reload");
  EXPECT_EQ(reload.body, "");
  auto reasoned = make_request({.kind = command_kind::reload, .reason = "new backend"});
  EXPECT_EQ(reasoned.body, R"({"reason":"new backend"})");
  auto forced = make_request(
      {.kind = command_kind::disable, .backend = "pg1", .force = true, .reason = "repair"});
  EXPECT_EQ(describe_request(forced), "POST /backends/pg1/disable");
  EXPECT_EQ(forced.body, R"({"reason":"repair","force":true})");
}

TEST(CtlRenderErrorTest, ShowsTheErrorMember) {
  auto req = make_request({.kind = command_kind::switchover, .backend = "pg2"});
  reply answer{409, R"({"error":"pg2 is not eligible: down","epoch":3,"active":"pg1"})"};
  EXPECT_EQ(render_error(req, answer),
            "pgfailover ctl: POST /switchover: HTTP 409: pg2 is not eligible: down\n");
}

TEST(CtlRenderErrorTest, ListsReloadIssuesOnePerLine) {
  auto req = make_request({.kind = command_kind::reload});
  reply answer{422, R"({"error":"the configuration file has errors; nothing changed",)"
                    R"("issues":["pgf.toml:12: backends[1].port: out of range",)"
                    R"("pgf.toml:20: pool.mode: unknown value"]})"};
  EXPECT_EQ(render_error(req, answer),
            "pgfailover ctl: POST /reload: HTTP 422: the configuration file has errors; "
            "nothing changed\n"
            "  pgf.toml:12: backends[1].port: out of range\n"
            "  pgf.toml:20: pool.mode: unknown value\n");
}

TEST(CtlRenderErrorTest, FallsBackToTheBodyOrTheStatusText) {
  auto req = make_request({.kind = command_kind::status});
  EXPECT_EQ(render_error(req, {502, "<html>bad gateway</html>\n<p>more</p>"}),
            "pgfailover ctl: GET /status: HTTP 502: <html>bad gateway</html>\n");
  EXPECT_EQ(render_error(req, {503, ""}),
            "pgfailover ctl: GET /status: HTTP 503: Service Unavailable\n");
}

struct captured {
  int code = 0;
  std::string out;
  std::string err;
};

captured report_of(const command& cmd, const reply& answer, output_options opts = {}) {
  std::ostringstream out;
  std::ostringstream err;
  auto code = report(cmd, make_request(cmd), answer, opts, out, err);
  return {code, out.str(), err.str()};
}

TEST(CtlReportTest, PrintsActionResultAndExitsZero) {
  auto got = report_of({.kind = command_kind::switchover, .backend = "pg2"},
                       {200, R"({"ok":true,"epoch":4,"active":"pg2"})"});
  EXPECT_EQ(got.code, 0);
  EXPECT_EQ(got.out, "switchover to pg2: done (epoch 4, active pg2)\n");
  EXPECT_EQ(got.err, "");
}

TEST(CtlReportTest, JsonPrintsTheBodyVerbatim) {
  auto got = report_of({.kind = command_kind::status}, {200, R"({"active":"pg1","epoch":3})"},
                       {.is_json = true});
  EXPECT_EQ(got.code, 0);
  EXPECT_EQ(got.out, "{\"active\":\"pg1\",\"epoch\":3}\n");
  EXPECT_EQ(got.err, "");
}

TEST(CtlReportTest, RefusalExitsOneAndGoesToStderr) {
  auto got = report_of({.kind = command_kind::disable, .backend = "pg9"},
                       {404, R"({"error":"no backend is named \"pg9\""})"});
  EXPECT_EQ(got.code, 1);
  EXPECT_EQ(got.out, "");
  EXPECT_EQ(got.err,
            "pgfailover ctl: POST /backends/pg9/disable: HTTP 404: no backend is named \"pg9\"\n");
}

TEST(CtlReportTest, JsonRefusalPrintsBodyAndError) {
  auto got = report_of({.kind = command_kind::pause}, {409, R"({"error":"already paused"})"},
                       {.is_json = true});
  EXPECT_EQ(got.code, 1);
  EXPECT_EQ(got.out, "{\"error\":\"already paused\"}\n");
  EXPECT_EQ(got.err, "pgfailover ctl: POST /pause: HTTP 409: already paused\n");
}

TEST(CtlReportTest, UnauthorizedWithoutTokenSaysHowToGiveOne) {
  reply answer{401, R"({"error":"this call needs a token"})"};
  auto got = report_of({.kind = command_kind::resume}, answer);
  EXPECT_EQ(got.code, 1);
  EXPECT_EQ(got.err,
            "pgfailover ctl: POST /resume: HTTP 401: this call needs a token\n"
            "pgfailover ctl: no token was given: pass --token or set PGFAILOVER_TOKEN\n");

  auto with_token = report_of({.kind = command_kind::resume}, answer, {.has_token = true});
  EXPECT_EQ(with_token.err, "pgfailover ctl: POST /resume: HTTP 401: this call needs a token\n");
}

TEST(CtlReportTest, AnswerThatIsNotJsonExitsTwo) {
  auto got = report_of({.kind = command_kind::status}, {200, "ok\n"});
  EXPECT_EQ(got.code, 2);
  EXPECT_EQ(got.out, "");
  EXPECT_TRUE(got.err.starts_with("pgfailover ctl: GET /status: the answer is not JSON: "))
      << got.err;
}

}  // namespace
}  // namespace pgf::ctl
