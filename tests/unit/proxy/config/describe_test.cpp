// describe(): every key with its effective value, secrets masked, and output that loads.
#include <gtest/gtest.h>

#include "proxy/config/config.hpp"
#include "tests/unit/proxy/config/config_test_support.hpp"

namespace pgf::config {
namespace {

using testing::local_backend;

constexpr std::string_view with_secrets = R"([proxy]
auth = "scram-sha-256"
[health]
user = "probe"
password = "probe-Secret-1"
[admin]
listen = "0.0.0.0:6480"
token = "admin-Secret-2"
[[backend]]
name = "main"
priority = 1
url = "postgresql://app:url-Secret-3@db.example.com:5433/app?sslmode=disable"
password = "backend-Secret-4"
databases = { app = "app_prod" }
[[backend]]
name = "copy"
priority = 2
url = "host=copy.example.com password=url-Secret-5 sslmode=disable"
[[user]]
name = "alice"
password = "user-Secret-6"
[user.backends.copy]
user = "alice_copy"
password = "override-Secret-7"
)";

bool contains(const std::string& text, std::string_view piece) {
  return text.find(piece) != std::string::npos;
}

TEST(DescribeTest, ShowsEveryKeyWithItsDefault) {
  auto cfg =
      load_string("[proxy]\nauth = \"passthrough\"\n" + std::string(local_backend), "test.toml");

  auto text = describe(cfg);

  for (auto line : {"[proxy]",
                    "listen = \"127.0.0.1:6432\"",
                    "pool_mode = \"session\"",
                    "auth = \"passthrough\"",
                    "max_client_connections = 10000",
                    "connect_timeout = \"5s\"",
                    "max_message_size = \"1GB\"",
                    "on_session_state = \"pin\"",
                    "state_file = \"pgfailover.state\"",
                    "[pool]",
                    "pool_size = 20",
                    "server_idle_timeout = \"10m\"",
                    "server_lifetime = \"1h\"",
                    "# client_idle_timeout is unset: off",
                    "reset_query = \"DISCARD ALL\"",
                    "[health]",
                    "interval = \"250ms\"",
                    "timeout = \"400ms\"",
                    "fall = 2",
                    "# password is unset: each backend's password",
                    "[failover]",
                    "failback = \"manual\"",
                    "target_session_attrs = \"read-write\"",
                    "# on_switch is unset: no command runs",
                    "hook_timeout = \"10s\"",
                    "[admin]",
                    "listen = \"127.0.0.1:6480\"",
                    "# token is unset: no token",
                    "[tls]",
                    "client_tls = \"disable\"",
                    "[[backend]]",
                    "name = \"local\"",
                    "priority = 1",
                    "max_server_connections = 100",
                    "databases = {}",
                    "# promote is unset: never promoted by SQL",
                    "promote_timeout = \"30s\""}) {
    EXPECT_TRUE(contains(text, std::string(line) + "\n")) << line << "\n" << text;
  }
  EXPECT_TRUE(contains(text, "workers = " + std::to_string(cfg.proxy.workers) + "\n")) << text;
  EXPECT_TRUE(contains(text, "url = \"postgresql://app@127.0.0.1:5432/app?sslmode=disable\"\n"))
      << text;
}

TEST(DescribeTest, NeverShowsASecret) {
  auto cfg = load_string(with_secrets, "test.toml");

  auto text = describe(cfg);

  EXPECT_FALSE(contains(text, "Secret")) << text;
  EXPECT_TRUE(contains(text, "token = \"****\"\n")) << text;
  EXPECT_TRUE(contains(text, "password = \"****\"\n")) << text;
  EXPECT_TRUE(contains(text, "password='****'")) << text;
  EXPECT_TRUE(contains(text, "[user.backends.copy]\nuser = \"alice_copy\"\npassword = \"****\"\n"))
      << text;
  EXPECT_TRUE(contains(text, "databases = { app = \"app_prod\" }\n")) << text;
  EXPECT_TRUE(contains(text, "# pool_size is unset: [pool].pool_size applies\n")) << text;
}

TEST(DescribeTest, OutputLoadsAgainToTheSameConfiguration) {
  auto cfg = load_string(with_secrets, "test.toml");
  auto text = describe(cfg);

  auto again = load_string(text, "test.toml");

  EXPECT_EQ(describe(again), text);
  ASSERT_EQ(again.backends.size(), 2u);
  EXPECT_EQ(again.backends[0].endpoint.host, "db.example.com");
  EXPECT_EQ(again.backends[0].endpoint.port, 5433);
  EXPECT_EQ(again.backends[1].endpoint.host, "copy.example.com");
  EXPECT_EQ(again.users.at(0).backends.at("copy").user, "alice_copy");
}

TEST(DescribeTest, QuotesNamesAndValuesThatNeedIt) {
  auto cfg = load_string("[proxy]\nauth = \"passthrough\"\nstate_file = 'C:\\x \"y\"'\n" +
                             std::string(local_backend) + "databases = { \"my db\" = \"b\" }\n",
                         "test.toml");

  auto text = describe(cfg);

  EXPECT_TRUE(contains(text, "state_file = \"C:\\\\x \\\"y\\\"\"\n")) << text;
  EXPECT_TRUE(contains(text, "databases = { \"my db\" = \"b\" }\n")) << text;
  EXPECT_EQ(load_string(text, "again").proxy.state_file, "C:\\x \"y\"");
}

}  // namespace
}  // namespace pgf::config
