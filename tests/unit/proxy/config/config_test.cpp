// Loading and validation: defaults, every class of error with its file:line:key, the rules
// that span sections, environment expansion, and the two files shipped in conf/.
#include "proxy/config/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/unit/proxy/config/config_test_support.hpp"

namespace pgf::config {
namespace {

using namespace std::chrono_literals;
using testing::issues_of;
using testing::joined;
using testing::local_backend;
using testing::only_issue;
using testing::scoped_env;

std::string passthrough(std::string_view rest = local_backend) {
  return "[proxy]\nauth = \"passthrough\"\n" + std::string(rest);
}

TEST(ConfigLoadTest, FillsEveryDefault) {
  auto cfg = load_string(passthrough(), "test.toml");

  EXPECT_EQ(cfg.source_path, "test.toml");
  EXPECT_EQ(cfg.proxy.listen.host, "127.0.0.1");
  EXPECT_EQ(cfg.proxy.listen.port, 6432);
  EXPECT_FALSE(cfg.proxy.unix_socket_dir);
  EXPECT_EQ(cfg.proxy.mode, pool_mode::session);
  EXPECT_EQ(cfg.proxy.max_client_connections, 10000u);
  EXPECT_EQ(cfg.proxy.connect_timeout, 5s);
  EXPECT_EQ(cfg.proxy.startup_timeout, 10s);
  EXPECT_EQ(cfg.proxy.max_message_size, 1024u * 1024u * 1024u);
  EXPECT_EQ(cfg.proxy.shutdown_timeout, 30s);
  EXPECT_EQ(cfg.proxy.on_session_state, session_state_policy::pin);
  EXPECT_EQ(cfg.proxy.state_file, "pgfailover.state");

  EXPECT_EQ(cfg.pool.pool_size, 20u);
  EXPECT_EQ(cfg.pool.min_idle, 0u);
  EXPECT_EQ(cfg.pool.pool_timeout, 30s);
  EXPECT_EQ(cfg.pool.server_idle_timeout, 10min);
  EXPECT_EQ(cfg.pool.server_lifetime, 1h);
  EXPECT_FALSE(cfg.pool.client_idle_timeout);
  EXPECT_FALSE(cfg.pool.idle_in_transaction_timeout);
  EXPECT_EQ(cfg.pool.max_prepared_statements, 200u);
  EXPECT_EQ(cfg.pool.reset_query, "DISCARD ALL");

  EXPECT_EQ(cfg.health.interval, 250ms);
  EXPECT_EQ(cfg.health.timeout, 400ms);
  EXPECT_EQ(cfg.health.fall, 2u);
  EXPECT_EQ(cfg.health.rise, 2u);
  EXPECT_FALSE(cfg.health.user);
  EXPECT_FALSE(cfg.health.password);

  EXPECT_EQ(cfg.failover.failback, failback_policy::manual);
  EXPECT_EQ(cfg.failover.failback_after, 30s);
  EXPECT_EQ(cfg.failover.target_session_attrs, session_attrs::read_write);
  EXPECT_EQ(cfg.failover.startup_wait, 2s);
  EXPECT_EQ(cfg.failover.drain_timeout, 10s);
  EXPECT_EQ(cfg.failover.pause_timeout, 60s);
  EXPECT_FALSE(cfg.failover.on_switch);
  EXPECT_EQ(cfg.failover.hook_timeout, 10s);

  EXPECT_EQ(cfg.admin.listen.host, "127.0.0.1");
  EXPECT_EQ(cfg.admin.listen.port, 6480);
  EXPECT_FALSE(cfg.admin.token);
  EXPECT_EQ(cfg.tls.client_tls, client_tls_mode::disable);
  EXPECT_FALSE(cfg.tls.cert);
  EXPECT_TRUE(cfg.users.empty());
}

TEST(ConfigLoadTest, FillsBackendDefaults) {
  auto cfg = load_string(passthrough(), "test.toml");

  ASSERT_EQ(cfg.backends.size(), 1u);
  const auto& backend = cfg.backends[0];
  EXPECT_EQ(backend.name, "local");
  EXPECT_EQ(backend.priority, 1u);
  EXPECT_EQ(backend.url, "postgresql://app@127.0.0.1:5432/app?sslmode=disable");
  EXPECT_FALSE(backend.password);
  EXPECT_EQ(backend.max_server_connections, 100u);
  EXPECT_FALSE(backend.ready_query);
  EXPECT_TRUE(backend.databases.empty());
  EXPECT_EQ(backend.promote, promote_method::none);
  EXPECT_FALSE(backend.promote_command);
  EXPECT_EQ(backend.promote_timeout, 30s);
}

TEST(ConfigLoadTest, WorkersDefaultToTheCoreCount) {
  auto cfg = load_string(passthrough(), "test.toml");

  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(cfg.proxy.workers, std::min(cores, 256u));
}

TEST(ConfigLoadTest, ReadsEveryKeyOfEverySection) {
  auto cfg = load_string(R"([proxy]
listen = "[::1]:7000"
unix_socket_dir = "/tmp/pgf"
workers = 3
pool_mode = "transaction"
auth = "md5"
max_client_connections = 50
connect_timeout = "1m"
startup_timeout = "2s"
max_message_size = "16MB"
shutdown_timeout = "1h"
on_session_state = "reject"
state_file = "/var/lib/pgf.state"
[pool]
pool_size = 5
min_idle = 2
pool_timeout = "3s"
server_idle_timeout = "4s"
server_lifetime = "1d"
client_idle_timeout = "5m"
idle_in_transaction_timeout = "6s"
max_prepared_statements = 0
reset_query = ""
[health]
interval = "100ms"
timeout = "1s"
fall = 3
rise = 4
user = "probe"
password = "probe-pw"
[failover]
failback = "auto"
failback_after = "0s"
target_session_attrs = "prefer-standby"
startup_wait = "0ms"
drain_timeout = "7s"
pause_timeout = "8s"
on_switch = "/bin/true"
hook_timeout = "9s"
[admin]
listen = "0.0.0.0:0"
token = "t0ken"
[tls]
cert = "c.pem"
key = "k.pem"
ca = "ca.pem"
[[backend]]
name = "pg-1"
priority = 7
url = "host=/var/run/postgresql dbname=app sslmode=disable"
password = "pw"
max_server_connections = 12
ready_query = "SELECT true"
databases = { app = "app_prod", "my db" = "other" }
promote = "sql"
promote_timeout = "45s"
[[user]]
name = "alice"
password = "alice-pw"
pool_size = 3
[user.backends.pg-1]
user = "alice_pg1"
password = "other-pw"
)",
                         "test.toml");

  EXPECT_EQ(cfg.proxy.listen.host, "::1");
  EXPECT_EQ(cfg.proxy.listen.port, 7000);
  EXPECT_EQ(cfg.proxy.unix_socket_dir, "/tmp/pgf");
  EXPECT_EQ(cfg.proxy.workers, 3u);
  EXPECT_EQ(cfg.proxy.mode, pool_mode::transaction);
  EXPECT_EQ(cfg.proxy.auth, auth_method::md5);
  EXPECT_EQ(cfg.proxy.max_client_connections, 50u);
  EXPECT_EQ(cfg.proxy.connect_timeout, 1min);
  EXPECT_EQ(cfg.proxy.startup_timeout, 2s);
  EXPECT_EQ(cfg.proxy.max_message_size, 16u * 1024 * 1024);
  EXPECT_EQ(cfg.proxy.shutdown_timeout, 1h);
  EXPECT_EQ(cfg.proxy.on_session_state, session_state_policy::reject);
  EXPECT_EQ(cfg.proxy.state_file, "/var/lib/pgf.state");

  EXPECT_EQ(cfg.pool.pool_size, 5u);
  EXPECT_EQ(cfg.pool.min_idle, 2u);
  EXPECT_EQ(cfg.pool.pool_timeout, 3s);
  EXPECT_EQ(cfg.pool.server_idle_timeout, 4s);
  EXPECT_EQ(cfg.pool.server_lifetime, 24h);
  EXPECT_EQ(cfg.pool.client_idle_timeout, duration(5min));
  EXPECT_EQ(cfg.pool.idle_in_transaction_timeout, duration(6s));
  EXPECT_EQ(cfg.pool.max_prepared_statements, 0u);
  EXPECT_EQ(cfg.pool.reset_query, "");

  EXPECT_EQ(cfg.health.interval, 100ms);
  EXPECT_EQ(cfg.health.timeout, 1s);
  EXPECT_EQ(cfg.health.fall, 3u);
  EXPECT_EQ(cfg.health.rise, 4u);
  EXPECT_EQ(cfg.health.user, "probe");
  EXPECT_EQ(cfg.health.password, "probe-pw");

  EXPECT_EQ(cfg.failover.failback, failback_policy::automatic);
  EXPECT_EQ(cfg.failover.failback_after, 0s);
  EXPECT_EQ(cfg.failover.target_session_attrs, session_attrs::prefer_standby);
  EXPECT_EQ(cfg.failover.startup_wait, 0s);
  EXPECT_EQ(cfg.failover.drain_timeout, 7s);
  EXPECT_EQ(cfg.failover.pause_timeout, 8s);
  EXPECT_EQ(cfg.failover.on_switch, "/bin/true");
  EXPECT_EQ(cfg.failover.hook_timeout, 9s);

  EXPECT_EQ(cfg.admin.listen.host, "0.0.0.0");
  EXPECT_EQ(cfg.admin.listen.port, 0);
  EXPECT_EQ(cfg.admin.token, "t0ken");
  EXPECT_EQ(cfg.tls.cert, "c.pem");
  EXPECT_EQ(cfg.tls.key, "k.pem");
  EXPECT_EQ(cfg.tls.ca, "ca.pem");

  ASSERT_EQ(cfg.backends.size(), 1u);
  const auto& backend = cfg.backends[0];
  EXPECT_EQ(backend.priority, 7u);
  EXPECT_EQ(backend.endpoint.host, "/var/run/postgresql");
  EXPECT_EQ(backend.password, "pw");
  EXPECT_EQ(backend.max_server_connections, 12u);
  EXPECT_EQ(backend.ready_query, "SELECT true");
  EXPECT_EQ(backend.databases,
            (std::map<std::string, std::string>{{"app", "app_prod"}, {"my db", "other"}}));
  EXPECT_EQ(backend.promote, promote_method::sql);
  EXPECT_EQ(backend.promote_timeout, 45s);

  ASSERT_EQ(cfg.users.size(), 1u);
  const auto& user = cfg.users[0];
  EXPECT_EQ(user.name, "alice");
  EXPECT_EQ(user.password, "alice-pw");
  EXPECT_EQ(user.pool_size, 3u);
  ASSERT_EQ(user.backends.count("pg-1"), 1u);
  EXPECT_EQ(user.backends.at("pg-1").user, "alice_pg1");
  EXPECT_EQ(user.backends.at("pg-1").password, "other-pw");
}

TEST(ConfigLoadTest, AcceptsEverySpellingOfEachEnum) {
  for (auto attrs : {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}) {
    auto text = passthrough() + "[failover]\ntarget_session_attrs = \"" + attrs + "\"\n";
    EXPECT_NO_THROW(load_string(text, "test.toml")) << attrs;
  }
  for (auto auth : {"scram-sha-256", "md5"}) {
    auto text = std::string("[proxy]\nauth = \"") + auth + "\"\n" + std::string(local_backend) +
                "[[user]]\nname = \"u\"\npassword = \"p\"\n";
    EXPECT_EQ(load_string(text, "test.toml").users.size(), 1u) << auth;
  }
  auto trust = load_string("[proxy]\nauth = \"trust\"\n" + std::string(local_backend), "t");
  EXPECT_EQ(trust.proxy.auth, auth_method::trust);
  auto disable = load_string(passthrough() + "[tls]\nclient_tls = \"disable\"\n", "t");
  EXPECT_EQ(disable.tls.client_tls, client_tls_mode::disable);
}

TEST(ConfigLoadTest, SortsBackendsByPriority) {
  auto cfg = load_string(R"([proxy]
auth = "passthrough"
[[backend]]
name = "c"
priority = 30
url = "host=c sslmode=disable"
[[backend]]
name = "a"
priority = 1
url = "host=a sslmode=disable"
[[backend]]
name = "b"
priority = 2
url = "host=b sslmode=disable"
)",
                         "test.toml");

  ASSERT_EQ(cfg.backends.size(), 3u);
  EXPECT_EQ(cfg.backends[0].name, "a");
  EXPECT_EQ(cfg.backends[1].name, "b");
  EXPECT_EQ(cfg.backends[2].name, "c");
}

TEST(ConfigErrorTest, ReportsSyntaxErrorWithItsLine) {
  auto issue = only_issue("[proxy]\nauth = \"passthrough\"\nlisten = \n");

  EXPECT_EQ(issue.rfind("test.toml:3: ", 0), 0u) << issue;
}

TEST(ConfigErrorTest, ReportsUnknownKeyWithSuggestion) {
  auto issue = only_issue(passthrough() + "[health]\nintervall = \"1s\"\n");

  EXPECT_EQ(issue,
            "test.toml:9: health.intervall: unknown key 'intervall'; did you mean 'interval'?");
}

TEST(ConfigErrorTest, SuggestsForSwappedLettersAndSections) {
  auto issues = issues_of(R"([proxi]
listen = "127.0.0.1:1"
[proxy]
auth = "passthrough"
[[backend]]
nmae = "a"
name = "a"
priority = 1
url = "host=a sslmode=disable"
)");

  ASSERT_EQ(issues.size(), 2u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(),
            "test.toml:1: proxi: unknown key 'proxi'; did you mean 'proxy'?");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:6: backend[0].nmae: unknown key 'nmae'; did you mean 'name'?");
}

TEST(ConfigErrorTest, GivesNoSuggestionWhenNothingIsClose) {
  auto issue = only_issue(passthrough() + "[pool]\ncolour = \"blue\"\n");

  EXPECT_EQ(issue, "test.toml:9: pool.colour: unknown key 'colour'");
}

TEST(ConfigErrorTest, ReportsWrongTypes) {
  auto issues = issues_of(R"([proxy]
auth = "passthrough"
listen = 6432
[health]
interval = 250
fall = "two"
[pool]
max_prepared_statements = 1.5
[[backend]]
name = "a"
priority = 1
url = "host=a sslmode=disable"
databases = "app"
)");

  ASSERT_EQ(issues.size(), 5u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:3: proxy.listen: expected a string");
  EXPECT_EQ(issues[1].to_string().rfind(
                "test.toml:5: health.interval: expected a duration string like \"250ms\"", 0),
            0u)
      << issues[1].to_string();
  EXPECT_EQ(issues[2].to_string(), "test.toml:6: health.fall: expected an integer");
  EXPECT_EQ(issues[3].to_string(),
            "test.toml:8: pool.max_prepared_statements: expected an integer");
  EXPECT_EQ(issues[4].to_string(),
            "test.toml:13: backend[0].databases: expected a table, as in [backend[0].databases]");
}

TEST(ConfigErrorTest, RefusesDurationsWithoutUnit) {
  auto issue = only_issue(passthrough() + "[health]\ntimeout = \"400\"\n");

  EXPECT_EQ(
      issue.rfind("test.toml:9: health.timeout: expected a duration string like \"250ms\"", 0), 0u)
      << issue;
}

TEST(ConfigErrorTest, RefusesUnknownEnumValueWithSuggestion) {
  auto issue = only_issue(passthrough() + "[failover]\nfailback = \"manul\"\n");

  EXPECT_EQ(issue,
            "test.toml:9: failover.failback: unknown value \"manul\"; did you mean \"manual\"?");
}

TEST(ConfigErrorTest, ListsEnumValuesWhenNothingIsClose) {
  auto issue = only_issue(passthrough() + "[proxy.x]\n");
  EXPECT_EQ(issue, "test.toml:8: proxy.x: unknown key 'x'");

  auto mode = only_issue("[proxy]\nauth = \"passthrough\"\npool_mode = \"statement\"\n" +
                         std::string(local_backend));
  EXPECT_EQ(mode,
            "test.toml:3: proxy.pool_mode: unknown value \"statement\"; expected one of "
            "\"session\", \"transaction\"");
}

TEST(ConfigErrorTest, ReportsMissingBackendKeysAtItsSection) {
  auto issues = issues_of(R"([proxy]
auth = "passthrough"

[[backend]]
password = "x"
)");

  ASSERT_EQ(issues.size(), 3u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:4: backend[0].name: missing required key 'name'");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:4: backend[0].priority: missing required key 'priority'");
  EXPECT_EQ(issues[2].to_string(), "test.toml:4: backend[0].url: missing required key 'url'");
}

TEST(ConfigErrorTest, ReportsMissingUserKeys) {
  auto issues = issues_of(std::string(local_backend) + "[[user]]\npool_size = 2\n");

  ASSERT_EQ(issues.size(), 2u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:6: user[0].name: missing required key 'name'");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:6: user[0].password: missing required key 'password'");
}

TEST(ConfigErrorTest, RefusesEmptyRequiredStrings) {
  auto issues = issues_of(std::string(local_backend) + "[[user]]\nname = \"\"\npassword = \"\"\n");

  ASSERT_EQ(issues.size(), 2u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:7: user[0].name: must not be empty");
  EXPECT_EQ(issues[1].to_string(), "test.toml:8: user[0].password: must not be empty");
}

TEST(ConfigErrorTest, RefusesDuplicateBackendNamesAndPriorities) {
  auto issues = issues_of(R"([proxy]
auth = "passthrough"
[[backend]]
name = "a"
priority = 1
url = "host=a sslmode=disable"
[[backend]]
name = "a"
priority = 1
url = "host=b sslmode=disable"
)");

  ASSERT_EQ(issues.size(), 2u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(),
            "test.toml:8: backend[1].name: backend name 'a' is already used (line 3)");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:9: backend[1].priority: priority 1 is already used by backend 'a' (line 3)");
}

TEST(ConfigErrorTest, RefusesDuplicateUsers) {
  auto issues = issues_of(std::string(local_backend) +
                          "[[user]]\nname = \"u\"\npassword = \"p\"\n"
                          "[[user]]\nname = \"u\"\npassword = \"q\"\n");

  ASSERT_EQ(issues.size(), 1u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:10: user[1].name: user 'u' is defined twice");
}

TEST(ConfigErrorTest, RefusesBackendNamesThatCannotAppearInUrls) {
  auto issue = only_issue(R"([proxy]
auth = "passthrough"
[[backend]]
name = "pg 1"
priority = 1
url = "host=a sslmode=disable"
)");

  EXPECT_EQ(issue,
            "test.toml:4: backend[0].name: a backend name may hold only letters, digits, "
            "'-' and '_'");
}

TEST(ConfigErrorTest, RefusesValuesOutOfRange) {
  auto issues = issues_of(R"([proxy]
auth = "passthrough"
workers = 0
listen = "127.0.0.1:70000"
connect_timeout = "0s"
max_message_size = "512"
max_client_connections = -1
[pool]
pool_size = 0
[health]
fall = 0
rise = 0
[[backend]]
name = "a"
priority = 0
url = "host=a sslmode=disable"
max_server_connections = 0
)");

  ASSERT_EQ(issues.size(), 10u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(), "test.toml:3: proxy.workers: must be between 1 and 256");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:4: proxy.listen: the port must be a number between 0 and 65535");
  EXPECT_EQ(issues[2].to_string(), "test.toml:5: proxy.connect_timeout: must be more than 0");
  EXPECT_EQ(issues[3].to_string(),
            "test.toml:6: proxy.max_message_size: must be between 1kB and 1GB");
  EXPECT_EQ(issues[4].to_string(), "test.toml:7: proxy.max_client_connections: must be at least 1");
  EXPECT_EQ(issues[5].to_string(), "test.toml:9: pool.pool_size: must be at least 1");
  EXPECT_EQ(issues[6].to_string(), "test.toml:11: health.fall: must be at least 1");
  EXPECT_EQ(issues[7].to_string(), "test.toml:12: health.rise: must be at least 1");
  EXPECT_EQ(issues[8].to_string(), "test.toml:15: backend[0].priority: must be at least 1");
  EXPECT_EQ(issues[9].to_string(),
            "test.toml:17: backend[0].max_server_connections: must be at least 1");
}

TEST(ConfigErrorTest, RefusesTooManyWorkersAndTooLargeMessages) {
  auto text = "[proxy]\nauth = \"passthrough\"\nworkers = 257\nmax_message_size = \"2GB\"\n" +
              std::string(local_backend);
  auto limits = issues_of(text);
  ASSERT_EQ(limits.size(), 2u) << joined(limits);
  EXPECT_EQ(limits[0].to_string(), "test.toml:3: proxy.workers: must be between 1 and 256");
  EXPECT_EQ(limits[1].to_string(),
            "test.toml:4: proxy.max_message_size: must be between 1kB and 1GB");
}

TEST(ConfigErrorTest, RefusesMinIdleAbovePoolSize) {
  auto issue = only_issue(passthrough() + "[pool]\npool_size = 2\nmin_idle = 3\n");

  EXPECT_EQ(issue, "test.toml:10: pool.min_idle: must not exceed pool_size (2)");
}

TEST(ConfigErrorTest, RefusesBothPromotionMethods) {
  auto issue = only_issue(passthrough() + "promote = \"sql\"\npromote_command = \"x\"\n");

  EXPECT_EQ(issue,
            "test.toml:9: backend[0].promote_command: set either promote or promote_command, "
            "not both");
}

TEST(ConfigErrorTest, RequiresABackend) {
  auto issue = only_issue("[proxy]\nauth = \"passthrough\"\n");

  EXPECT_EQ(issue, "test.toml: backend: at least one [[backend]] is required");
}

TEST(ConfigErrorTest, RefusesBackendWrittenAsPlainTable) {
  auto issue = only_issue("[proxy]\nauth = \"passthrough\"\n[backend]\nname = \"a\"\n");

  EXPECT_EQ(issue, "test.toml:3: backend: expected one or more [[backend]] sections");
}

TEST(ConfigErrorTest, CollectsEveryProblemInLineOrder) {
  auto text = std::string(R"([proxy]
auth = "passthrough"
listen = "nowhere"
[health]
fall = 0
timeout = "soon"
[[backend]]
name = "a"
priority = 1
url = "host=a,b sslmode=disable"
[[user]]
name = "u"
)");
  try {
    load_string(text, "test.toml");
    FAIL() << "loaded";
  } catch (const config_error& error) {
    const auto& issues = error.issues();
    ASSERT_EQ(issues.size(), 5u) << joined(issues);
    EXPECT_EQ(issues[0].line, 3u);
    EXPECT_EQ(issues[0].key, "proxy.listen");
    EXPECT_EQ(issues[1].line, 5u);
    EXPECT_EQ(issues[1].key, "health.fall");
    EXPECT_EQ(issues[2].line, 6u);
    EXPECT_EQ(issues[2].key, "health.timeout");
    EXPECT_EQ(issues[3].line, 10u);
    EXPECT_EQ(issues[3].key, "backend[0].url");
    EXPECT_EQ(issues[4].to_string(),
              "test.toml:11: user[0].password: missing required key 'password'");
    EXPECT_EQ(std::string(error.what()), joined(issues).substr(0, joined(issues).size() - 1));
  }
}

TEST(ConfigRuleTest, PassthroughRequiresSessionMode) {
  auto issue = only_issue("[proxy]\nauth = \"passthrough\"\npool_mode = \"transaction\"\n" +
                          std::string(local_backend));

  EXPECT_EQ(issue,
            "test.toml:3: proxy.pool_mode: auth = \"passthrough\" requires pool_mode = "
            "\"session\"");
}

TEST(ConfigRuleTest, ProxyAuthenticationNeedsAUser) {
  auto issue = only_issue(std::string(local_backend));
  EXPECT_EQ(issue,
            "test.toml: user: auth = \"scram-sha-256\" needs at least one [[user]] (or "
            "auth = \"passthrough\")");

  auto md5 = only_issue("[proxy]\nauth = \"md5\"\n" + std::string(local_backend));
  EXPECT_EQ(md5,
            "test.toml:2: user: auth = \"md5\" needs at least one [[user]] (or auth = "
            "\"passthrough\")");
}

TEST(ConfigRuleTest, TrustLoadsWithAWarning) {
  auto cfg = load_string("[proxy]\nauth = \"trust\"\n" + std::string(local_backend), "test.toml");

  ASSERT_EQ(cfg.warnings.size(), 1u);
  EXPECT_EQ(cfg.warnings[0].to_string(),
            "test.toml:2: proxy.auth: auth = \"trust\" lets every client in without a password; "
            "use it only locally");
}

TEST(ConfigRuleTest, PasswordAuthNeedsClientTls) {
  auto issue = only_issue("[proxy]\nauth = \"password\"\n" + std::string(local_backend) +
                          "[[user]]\nname = \"u\"\npassword = \"p\"\n");

  EXPECT_EQ(issue,
            "test.toml:2: proxy.auth: auth = \"password\" needs client TLS, which is not "
            "supported yet; use scram-sha-256 or md5");
}

TEST(ConfigRuleTest, RefusesOpenAdminAddressWithoutToken) {
  for (auto listen : {"0.0.0.0:6480", "10.1.2.3:6480", "[::]:6480", "*:6480", "db.example:1"}) {
    auto issue = only_issue(passthrough() + "[admin]\nlisten = \"" + listen + "\"\n");
    EXPECT_EQ(issue,
              "test.toml:9: admin.listen: refusing a non-loopback admin address without a "
              "token; set admin.token")
        << listen;
  }
}

TEST(ConfigRuleTest, AllowsLoopbackAdminWithoutToken) {
  for (auto listen : {"127.0.0.1:1", "127.1.2.3:1", "[::1]:1", "localhost:1", "LocalHost:1"}) {
    auto text = passthrough() + "[admin]\nlisten = \"" + listen + "\"\n";
    EXPECT_NO_THROW(load_string(text, "test.toml")) << listen;
  }
  auto open = load_string(passthrough() + "[admin]\nlisten = \"0.0.0.0:1\"\ntoken = \"t\"\n", "t");
  EXPECT_EQ(open.admin.token, "t");
}

TEST(ConfigRuleTest, RefusesClientTls) {
  auto issues = issues_of(passthrough() + "[tls]\nclient_tls = \"require\"\n");
  ASSERT_EQ(issues.size(), 2u) << joined(issues);
  EXPECT_EQ(issues[0].to_string(),
            "test.toml:9: tls.client_tls: client_tls other than "
            "\"disable\" needs tls.cert and tls.key");
  EXPECT_EQ(issues[1].to_string(),
            "test.toml:9: tls.client_tls: client TLS is not supported yet; "
            "use client_tls = \"disable\"");

  auto with_cert =
      only_issue(passthrough() + "[tls]\nclient_tls = \"allow\"\ncert = \"c\"\nkey = \"k\"\n");
  EXPECT_EQ(with_cert,
            "test.toml:9: tls.client_tls: client TLS is not supported yet; use "
            "client_tls = \"disable\"");
}

TEST(ConfigRuleTest, UserOverrideMustNameABackend) {
  auto issue = only_issue(std::string(local_backend) +
                          "[[user]]\nname = \"u\"\npassword = \"p\"\n"
                          "[user.backends.locl]\nuser = \"x\"\n");

  EXPECT_EQ(issue,
            "test.toml:9: user[0].backends.locl: no [[backend]] is named 'locl'; did you "
            "mean 'local'?");
}

TEST(ConfigRuleTest, UserOverrideKeysAreChecked) {
  auto issue = only_issue(std::string(local_backend) +
                          "[[user]]\nname = \"u\"\npassword = \"p\"\n"
                          "[user.backends.local]\nusr = \"x\"\n");

  EXPECT_EQ(issue,
            "test.toml:10: user[0].backends.local.usr: unknown key 'usr'; did you mean "
            "'user'?");
}

TEST(ConfigEnvTest, ExpandsVariablesAndDefaults) {
  scoped_env port("PGF_TEST_PORT", "7001");
  scoped_env unset("PGF_TEST_UNSET", nullptr);
  scoped_env empty("PGF_TEST_EMPTY", "");

  auto cfg = load_string(R"([proxy]
auth = "passthrough"
listen = "127.0.0.1:${PGF_TEST_PORT}"
state_file = "${PGF_TEST_UNSET:-/tmp/fallback.state}"
[admin]
listen = "127.0.0.1:${PGF_TEST_EMPTY:-6499}"
)" + std::string(local_backend),
                         "test.toml");

  EXPECT_EQ(cfg.proxy.listen.port, 7001);
  EXPECT_EQ(cfg.proxy.state_file, "/tmp/fallback.state");
  EXPECT_EQ(cfg.admin.listen.port, 6499);
}

TEST(ConfigEnvTest, ReportsUnsetVariableByName) {
  scoped_env unset("PGF_TEST_UNSET", nullptr);

  auto issue = only_issue(passthrough() + "password = \"${PGF_TEST_UNSET}\"\n");

  EXPECT_EQ(issue,
            "test.toml:8: backend[0].password: environment variable 'PGF_TEST_UNSET' is "
            "not set and has no default");
}

TEST(ConfigEnvTest, DoubleDollarIsALiteralDollar) {
  auto cfg = load_string(passthrough() + "password = \"pa$$word$\"\n", "test.toml");

  EXPECT_EQ(cfg.backends[0].password, "pa$word$");
}

TEST(ConfigEnvTest, ExpandsInsideUrlsAndIntegers) {
  scoped_env port("PGF_TEST_PG_PORT", "5444");
  scoped_env workers("PGF_TEST_WORKERS", nullptr);

  auto cfg = load_string(R"([proxy]
auth = "passthrough"
workers = "${PGF_TEST_WORKERS:-3}"
[[backend]]
name = "a"
priority = "${PGF_TEST_PRIORITY:-4}"
url = "postgresql://app@127.0.0.1:${PGF_TEST_PG_PORT}/app?sslmode=disable"
)",
                         "test.toml");

  EXPECT_EQ(cfg.proxy.workers, 3u);
  EXPECT_EQ(cfg.backends[0].priority, 4u);
  EXPECT_EQ(cfg.backends[0].endpoint.port, 5444);
}

TEST(ConfigEnvTest, ValueCannotChangeTheFileStructure) {
  scoped_env tricky("PGF_TEST_TRICKY", "x\"\n[admin]\nlisten = \"0.0.0.0:1");

  auto cfg =
      load_string(passthrough() + "[failover]\non_switch = \"${PGF_TEST_TRICKY}\"\n", "test.toml");

  EXPECT_EQ(cfg.failover.on_switch, "x\"\n[admin]\nlisten = \"0.0.0.0:1");
  EXPECT_EQ(cfg.admin.listen.host, "127.0.0.1");
}

TEST(ConfigEnvTest, ReportsExpansionThatIsNotAnInteger) {
  scoped_env workers("PGF_TEST_WORKERS", "many");

  auto issue = only_issue("[proxy]\nauth = \"passthrough\"\nworkers = \"${PGF_TEST_WORKERS}\"\n" +
                          std::string(local_backend));

  EXPECT_EQ(issue, "test.toml:3: proxy.workers: expected an integer");
}

TEST(ConfigFileTest, ReportsAMissingFile) {
  try {
    load_file("/nonexistent/pgfailover.toml");
    FAIL() << "loaded";
  } catch (const config_error& error) {
    ASSERT_EQ(error.issues().size(), 1u);
    EXPECT_EQ(error.issues()[0].to_string(),
              "/nonexistent/pgfailover.toml: cannot open the file: No such file or directory");
  }
}

TEST(ConfigFileTest, NamesTheFileInEveryIssue) {
  auto path = ::testing::TempDir() + "pgf_config_test.toml";
  {
    std::ofstream file(path);
    file << passthrough() << "[health]\nfall = 0\n";
  }

  try {
    load_file(path);
    FAIL() << "loaded";
  } catch (const config_error& error) {
    ASSERT_EQ(error.issues().size(), 1u);
    EXPECT_EQ(error.issues()[0].to_string(), path + ":9: health.fall: must be at least 1");
  }
  std::remove(path.c_str());
}

TEST(ConfigFileTest, LoadsTheReferenceFile) {
  auto cfg = load_file(std::string(PGF_SOURCE_DIR) + "/conf/pgfailover.toml");

  EXPECT_EQ(cfg.proxy.auth, auth_method::passthrough);
  EXPECT_EQ(cfg.proxy.listen.port, 6432);
  ASSERT_EQ(cfg.backends.size(), 1u);
  EXPECT_EQ(cfg.backends[0].endpoint.host, "127.0.0.1");
  EXPECT_EQ(cfg.backends[0].endpoint.user, "app");
  EXPECT_EQ(cfg.backends[0].endpoint.dbname, "app");
  EXPECT_TRUE(cfg.users.empty());

  // The reference shows every default: loading it must equal loading nothing but a backend.
  auto minimal = load_string(
      "[proxy]\nauth = \"passthrough\"\n[[backend]]\nname = \"local\"\n"
      "priority = 1\nurl = \"postgresql://app@127.0.0.1:5432/app\"\n",
      cfg.source_path);
  EXPECT_EQ(describe(cfg), describe(minimal));
}

TEST(ConfigFileTest, LoadsTheDemoFileWithDefaults) {
  scoped_env port("PGFAILOVER_PORT", nullptr);
  scoped_env admin("PGFAILOVER_ADMIN_PORT", nullptr);
  scoped_env state("PGFAILOVER_STATE_FILE", nullptr);
  scoped_env user("DEMO_USER", nullptr);
  scoped_env pg_port("DEMO_PG_PORT", nullptr);
  scoped_env standby_port("DEMO_STANDBY_PORT", nullptr);

  auto cfg = load_file(std::string(PGF_SOURCE_DIR) + "/conf/demo.toml");

  EXPECT_EQ(cfg.proxy.listen.host, "127.0.0.1");
  EXPECT_EQ(cfg.proxy.listen.port, 6432);
  EXPECT_EQ(cfg.admin.listen.port, 6480);
  EXPECT_EQ(cfg.proxy.auth, auth_method::passthrough);
  EXPECT_EQ(cfg.proxy.mode, pool_mode::session);
  EXPECT_EQ(cfg.proxy.state_file, "/tmp/pgfailover-demo.state");
  ASSERT_EQ(cfg.backends.size(), 2u);
  EXPECT_EQ(cfg.backends[1].name, "standby");
  EXPECT_EQ(cfg.backends[1].priority, 2u);
  EXPECT_EQ(cfg.backends[1].promote, promote_method::sql);
  EXPECT_EQ(cfg.backends[1].endpoint.port, 5433);
  EXPECT_EQ(cfg.backends[0].name, "primary");
  EXPECT_EQ(cfg.backends[0].priority, 1u);
  EXPECT_EQ(cfg.backends[0].endpoint.user, "postgres");
  EXPECT_EQ(cfg.backends[0].endpoint.port, 5432);
  EXPECT_EQ(cfg.backends[0].endpoint.dbname, "postgres");
  EXPECT_EQ(cfg.backends[0].endpoint.sslmode, "disable");
  EXPECT_TRUE(cfg.warnings.empty());
}

TEST(ConfigFileTest, LoadsTheDemoFileFromTheEnvironment) {
  scoped_env port("PGFAILOVER_PORT", "16432");
  scoped_env admin("PGFAILOVER_ADMIN_PORT", "16480");
  scoped_env state("PGFAILOVER_STATE_FILE", "/tmp/x.state");
  scoped_env user("DEMO_USER", "demo");
  scoped_env pg_port("DEMO_PG_PORT", "15432");
  scoped_env standby_port("DEMO_STANDBY_PORT", "15433");

  auto cfg = load_file(std::string(PGF_SOURCE_DIR) + "/conf/demo.toml");

  EXPECT_EQ(cfg.proxy.listen.port, 16432);
  EXPECT_EQ(cfg.admin.listen.port, 16480);
  EXPECT_EQ(cfg.proxy.state_file, "/tmp/x.state");
  EXPECT_EQ(cfg.backends[0].endpoint.user, "demo");
  EXPECT_EQ(cfg.backends[0].endpoint.port, 15432);
  EXPECT_EQ(cfg.backends[1].endpoint.user, "demo");
  EXPECT_EQ(cfg.backends[1].endpoint.port, 15433);
}

}  // namespace
}  // namespace pgf::config
