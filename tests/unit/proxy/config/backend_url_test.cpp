// Backend URLs through libpq's parser: both forms, what is refused and why, and that no
// message ever carries a piece of the URL that could be a password.
#include <gtest/gtest.h>

#include "proxy/config/config.hpp"
#include "proxy/config/config_detail.hpp"
#include "tests/unit/proxy/config/config_test_support.hpp"

namespace pgf::config {
namespace {

using namespace std::chrono_literals;
using testing::only_issue;

std::string with_url(std::string_view url) {
  return "[proxy]\nauth = \"passthrough\"\n[[backend]]\nname = \"a\"\npriority = 1\nurl = '''" +
         std::string(url) + "'''\n";
}

backend_endpoint endpoint_of(std::string_view url) {
  auto cfg = load_string(with_url(url), "test.toml");
  return cfg.backends.at(0).endpoint;
}

TEST(BackendUrlTest, ReadsTheUrlForm) {
  auto endpoint = endpoint_of(
      "postgresql://app:s3cret@db.example.com:5433/appdb?sslmode=disable&connect_timeout=7");

  EXPECT_EQ(endpoint.host, "db.example.com");
  EXPECT_EQ(endpoint.port, 5433);
  EXPECT_EQ(endpoint.user, "app");
  EXPECT_EQ(endpoint.password, "s3cret");
  EXPECT_EQ(endpoint.dbname, "appdb");
  EXPECT_EQ(endpoint.sslmode, "disable");
  EXPECT_EQ(endpoint.connect_timeout, std::chrono::seconds(7));
}

TEST(BackendUrlTest, ReadsTheKeyValueForm) {
  auto endpoint =
      endpoint_of("host=10.0.0.5 port=6000 user=app password='it\\'s' dbname=app sslmode=allow");

  EXPECT_EQ(endpoint.host, "10.0.0.5");
  EXPECT_EQ(endpoint.port, 6000);
  EXPECT_EQ(endpoint.user, "app");
  EXPECT_EQ(endpoint.dbname, "app");
  EXPECT_EQ(endpoint.sslmode, "allow");
  EXPECT_FALSE(endpoint.connect_timeout);
}

TEST(BackendUrlTest, AppliesLibpqDefaults) {
  auto endpoint = endpoint_of("postgresql://db.example.com");

  EXPECT_EQ(endpoint.port, 5432);
  EXPECT_FALSE(endpoint.user);
  EXPECT_FALSE(endpoint.password);
  EXPECT_FALSE(endpoint.dbname);
  EXPECT_EQ(endpoint.sslmode, "prefer");
}

TEST(BackendUrlTest, ReadsUnixSocketDirectoriesAndIpv6) {
  EXPECT_EQ(endpoint_of("host=/var/run/postgresql dbname=app").host, "/var/run/postgresql");
  EXPECT_EQ(endpoint_of("postgresql://%2Ftmp%2Fpg/app").host, "/tmp/pg");
  EXPECT_EQ(endpoint_of("postgresql:///app?host=/tmp").host, "/tmp");
  auto v6 = endpoint_of("postgresql://[::1]:5444/app");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 5444);
}

TEST(BackendUrlTest, PrefersHostaddrOverHost) {
  EXPECT_EQ(endpoint_of("host=db.example.com hostaddr=10.0.0.9").host, "10.0.0.9");
}

TEST(BackendUrlTest, PasswordKeyOverridesTheUrl) {
  auto cfg = load_string(with_url("postgresql://app:from-url@h/app") + "password = \"from-key\"\n",
                         "test.toml");
  EXPECT_EQ(cfg.backends[0].effective_password(), "from-key");

  auto url_only = load_string(with_url("postgresql://app:from-url@h/app"), "test.toml");
  EXPECT_EQ(url_only.backends[0].effective_password(), "from-url");
}

TEST(BackendUrlTest, WarnsThatPreferAndAllowMeanPlaintext) {
  auto cfg = load_string(with_url("postgresql://h/app"), "test.toml");

  ASSERT_EQ(cfg.warnings.size(), 1u);
  EXPECT_EQ(cfg.warnings[0].to_string(),
            "test.toml:6: backend[0].url: sslmode=prefer connects in plaintext: the proxy never "
            "asks a backend for TLS yet (say sslmode=disable to make that explicit)");
  EXPECT_TRUE(load_string(with_url("host=h sslmode=disable"), "t").warnings.empty());
}

TEST(BackendUrlTest, RefusesTlsModes) {
  for (auto mode : {"require", "verify-ca", "verify-full"}) {
    auto issue = only_issue(with_url(std::string("host=h sslmode=") + mode));
    EXPECT_EQ(issue,
              "test.toml:6: backend[0].url: TLS to backends is not supported yet; use "
              "sslmode=disable or prefer")
        << mode;
  }
  auto bogus = only_issue(with_url("host=h sslmode=sometimes"));
  EXPECT_EQ(bogus,
            "test.toml:6: backend[0].url: sslmode 'sometimes' is not one of disable, "
            "allow, prefer, require, verify-ca, verify-full");
}

TEST(BackendUrlTest, RefusesSeveralHosts) {
  auto expected =
      "test.toml:6: backend[0].url: the URL lists several hosts; give each one its "
      "own [[backend]]";
  EXPECT_EQ(only_issue(with_url("postgresql://a:5432,b:5433/app")), expected);
  EXPECT_EQ(only_issue(with_url("host=a,b dbname=app")), expected);
}

TEST(BackendUrlTest, RefusesUrlsWithoutHost) {
  EXPECT_EQ(only_issue(with_url("dbname=app")),
            "test.toml:6: backend[0].url: the URL names no host (for a Unix socket write "
            "host=/var/run/postgresql)");
}

TEST(BackendUrlTest, RefusesBadPortsAndTimeouts) {
  EXPECT_EQ(only_issue(with_url("host=h port=0")),
            "test.toml:6: backend[0].url: the URL's port must be a number between 1 and 65535");
  EXPECT_EQ(only_issue(with_url("host=h port=http")),
            "test.toml:6: backend[0].url: the URL's port must be a number between 1 and 65535");
  EXPECT_EQ(only_issue(with_url("host=h connect_timeout=soon")),
            "test.toml:6: backend[0].url: the URL's connect_timeout must be a whole number of "
            "seconds");
}

TEST(BackendUrlTest, ReportsLibpqErrorsWithoutTheSecret) {
  // Each of these makes libpq quote a piece of the input that holds the password.
  for (auto url : {"postgresql://app:hunter2%zz@h/app", "host=h hunter2",
                   "postgresql://app:hunter2@[::1/app", "postgresql://h/app?password=hunter2=x",
                   "postgresql://app:hunter2%00@h/app", "host='hunter2"}) {
    auto issue = only_issue(with_url(url));
    EXPECT_EQ(issue.rfind("test.toml:6: backend[0].url: libpq cannot read the URL: ", 0), 0u)
        << issue;
    EXPECT_EQ(issue.find("hunter2"), std::string::npos) << issue;
  }
}

TEST(BackendUrlTest, NamesAnUnknownOption) {
  EXPECT_EQ(only_issue(with_url("host=h colour=blue")),
            "test.toml:6: backend[0].url: libpq cannot read the URL: invalid connection option "
            "\"colour\"");
  EXPECT_EQ(only_issue(with_url("postgresql://h/app?colour=blue")),
            "test.toml:6: backend[0].url: libpq cannot read the URL: invalid URI query "
            "parameter: \"colour\"");
}

TEST(BackendUrlTest, MasksSecretsWhenShown) {
  EXPECT_EQ(detail::masked_url("postgresql://app@h/app"), "postgresql://app@h/app");

  auto masked = detail::masked_url("postgresql://app:hunter2@h:5433/app?sslpassword=k3y");
  EXPECT_EQ(masked.find("hunter2"), std::string::npos) << masked;
  EXPECT_EQ(masked.find("k3y"), std::string::npos) << masked;
  EXPECT_EQ(masked,
            "user='app' password='****' dbname='app' host='h' port='5433' "
            "sslpassword='****'");

  EXPECT_EQ(detail::masked_url("host=h password=hunter2 application_name='it\\'s'"),
            "password='****' host='h' application_name='it\\'s'");
  EXPECT_EQ(detail::masked_url("postgresql://app:hunter2%zz@h/app"), "****");
}

}  // namespace
}  // namespace pgf::config
