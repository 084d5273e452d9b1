// The text `pgfailover ctl` prints for the admin API's status, events and action answers.
#include "proxy/ctl/render.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace pgf::ctl {
namespace {

namespace json = boost::json;

TEST(CtlRenderStatusTest, ShowsHeaderAndAlignedBackendTable) {
  auto status = json::parse(R"({
    "active": null, "epoch": 3, "paused": false, "fenced": ["pg2"], "clients": 7,
    "backends": [
      {"name": "pg1", "priority": 1, "state": "up", "role": "primary", "read_only": false,
       "latency_ms": 0.42, "active": false, "fenced": false, "disabled": false,
       "eligible": true, "last_error": ""},
      {"name": "pg2", "state": "down", "latency_ms": 12, "fenced": true,
       "last_error": "  connection refused\n\tIs the server running?"}
    ]})");
  EXPECT_EQ(render_status(status),
            "active: none   epoch: 3   paused: no   fenced: pg2\n"
            "NAME  PRIO  STATE  ROLE     LATENCY  ACTIVE  ELIGIBLE  NOTE\n"
            "pg1      1  up     primary   0.42ms  no      yes\n"
            "pg2      -  down   -              -  -       -         fenced; connection refused\n");
}

TEST(CtlRenderStatusTest, ShowsPauseReason) {
  auto status = json::parse(R"({"active": "pg1", "epoch": 7, "paused": true,
    "pause_reason": "maintenance", "fenced": [], "backends": []})");
  EXPECT_EQ(render_status(status),
            "active: pg1   epoch: 7   paused: yes (maintenance)\n"
            "no backends\n");
}

TEST(CtlRenderStatusTest, MissingOrMistypedMembersShowAsDash) {
  EXPECT_EQ(render_status(json::parse("{}")), "active: -   epoch: -   paused: -\nno backends\n");
  EXPECT_EQ(render_status(json::parse("[1, 2]")),
            "active: -   epoch: -   paused: -\nno backends\n");
  auto odd = json::parse(R"({"active": 5, "epoch": "x", "paused": "no", "fenced": "pg1",
    "backends": [{"name": 1, "priority": "high", "state": "up", "latency_ms": "fast",
                  "active": 1}, 7]})");
  EXPECT_EQ(render_status(odd),
            "active: -   epoch: -   paused: -\n"
            "NAME  PRIO  STATE  ROLE  LATENCY  ACTIVE  ELIGIBLE  NOTE\n"
            "-        -  up     -           -  -       -\n"
            "-        -  -      -           -  -       -\n");
}

TEST(CtlRenderStatusTest, NoteJoinsFlagsAndShortensTheError) {
  auto status = json::parse(R"({"active": "pg1", "epoch": 1, "paused": false,
    "backends": [{"name": "pg1", "priority": 2, "state": "up", "role": "standby",
                  "latency_ms": 1.005, "active": true, "eligible": false, "disabled": true,
                  "fenced": true, "last_error": ")" +
                            std::string(80, 'x') + R"("}]})");
  EXPECT_EQ(render_status(status),
            "active: pg1   epoch: 1   paused: no\n"
            "NAME  PRIO  STATE  ROLE     LATENCY  ACTIVE  ELIGIBLE  NOTE\n"
            "pg1      2  up     standby   1.00ms  yes     no        disabled; fenced; " +
                std::string(60, 'x') + "...\n");
}

TEST(CtlRenderEventsTest, OneAlignedLinePerEventOldestFirst) {
  auto events = json::parse(R"({"events": [
    {"time": "2024-05-01T10:00:00Z", "kind": "switch", "backend": null, "from": null,
     "to": "pg1", "epoch": 1, "reason": "initial", "who": "router"},
    {"time": "2024-05-01T10:05:00Z", "kind": "operator", "backend": "pg2", "from": null,
     "to": null, "epoch": 1, "reason": "disable: maintenance", "who": "admin:127.0.0.1:51234"},
    {"time": "2024-05-01T10:05:00Z", "kind": "state", "backend": "pg2", "from": "up",
     "to": "disabled", "epoch": 1, "reason": "disabled by operator", "who": "router"},
    {"time": "2024-05-01T10:06:00Z", "kind": "switch", "from": "pg1", "to": "pg3",
     "epoch": 2, "reason": "", "who": "admin:[::1]:40000"}]})");
  EXPECT_EQ(
      render_events(events),
      "TIME                  KIND      EPOCH  CHANGE             WHO                    REASON\n"
      "2024-05-01T10:00:00Z  switch        1  none->pg1          router                 initial\n"
      "2024-05-01T10:05:00Z  operator      1  pg2                admin:127.0.0.1:51234  "
      "disable: maintenance\n"
      "2024-05-01T10:05:00Z  state         1  pg2: up->disabled  router                 "
      "disabled by operator\n"
      "2024-05-01T10:06:00Z  switch        2  pg1->pg3           admin:[::1]:40000\n");
}

TEST(CtlRenderEventsTest, EmptyOrMissingListSaysNoEvents) {
  EXPECT_EQ(render_events(json::parse(R"({"events": []})")), "no events\n");
  EXPECT_EQ(render_events(json::parse("{}")), "no events\n");
  EXPECT_EQ(render_events(json::parse("null")), "no events\n");
}

TEST(CtlRenderEventsTest, MissingMembersShowAsDashAndControlCharactersAsSpaces) {
  auto events = json::parse(R"({"events": [{}, {"kind": "state", "backend": "pg2",
    "reason": "probe\nfailed\u001b[31m"}]})");
  EXPECT_EQ(render_events(events),
            "TIME  KIND   EPOCH  CHANGE  WHO  REASON\n"
            "-     -          -  -       -\n"
            "-     state      -  pg2     -    probe failed [31m\n");
}

TEST(CtlRenderActionTest, ReportsEpochAndActiveBackend) {
  EXPECT_EQ(render_action("switchover to pg2",
                          json::parse(R"({"ok": true, "epoch": 4, "active": "pg2"})")),
            "switchover to pg2: done (epoch 4, active pg2)\n");
  EXPECT_EQ(
      render_action("disable pg1", json::parse(R"({"ok": true, "epoch": 5, "active": null})")),
      "disable pg1: done (epoch 5, no active backend)\n");
}

TEST(CtlRenderActionTest, SaysOkWithoutDetails) {
  EXPECT_EQ(render_action("pause", json::parse(R"({"ok": true})")), "pause: ok\n");
  EXPECT_EQ(render_action("pause", json::parse(R"({"ok": true, "epoch": 3, "active": "pg1",
                                                  "paused": true, "changed": false})")),
            "pause: nothing to do, already so (epoch 3, active pg1)\n");
  EXPECT_EQ(render_action("resume", json::parse("null")), "resume: ok\n");
}

TEST(CtlRenderActionTest, ListsReloadWarningsAndRestartKeys) {
  auto answer = json::parse(R"({"ok": true, "backends": ["pg1"], "epoch": 2, "active": "pg1",
    "restart_required": ["proxy.listen", "workers"], "warnings": ["user app has no password"]})");
  EXPECT_EQ(render_action("reload", answer),
            "reload: done (epoch 2, active pg1)\n"
            "warning: user app has no password\n"
            "takes effect after a restart: proxy.listen, workers\n");
}

TEST(CtlPrintableTest, ReplacesControlCharacters) {
  EXPECT_EQ(printable("a\x1b[2Jb\nc\td\x7f"), "a [2Jb c d ");
  EXPECT_EQ(printable("plain text"), "plain text");
}

}  // namespace
}  // namespace pgf::ctl
