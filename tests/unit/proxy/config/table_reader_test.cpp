// The typo suggestion behind "did you mean", and typed reads seen through load_string.
#include <gtest/gtest.h>

#include <vector>

#include "proxy/config/config_detail.hpp"
#include "tests/unit/proxy/config/config_test_support.hpp"

namespace pgf::config::detail {
namespace {

using testing::local_backend;
using testing::only_issue;

TEST(EditDistanceTest, CountsEditsAndSwaps) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("interval", "interval"), 0u);
  EXPECT_EQ(edit_distance("intervall", "interval"), 1u);
  EXPECT_EQ(edit_distance("nmae", "name"), 1u);
  EXPECT_EQ(edit_distance("lisen", "listen"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
}

TEST(ClosestMatchTest, SuggestsOnlyLikelyTypos) {
  std::vector<std::string> keys{"interval", "timeout", "fall", "rise", "user", "password"};

  EXPECT_EQ(closest_match("intervall", keys), "interval");
  EXPECT_EQ(closest_match("timout", keys), "timeout");
  EXPECT_EQ(closest_match("pasword", keys), "password");
  EXPECT_EQ(closest_match("fal", keys), "fall");
  EXPECT_EQ(closest_match("colour", keys), std::nullopt);
  EXPECT_EQ(closest_match("x", keys), std::nullopt);
  EXPECT_EQ(closest_match("b", std::vector<std::string>{"a"}), std::nullopt);
  EXPECT_EQ(closest_match("anything", std::vector<std::string>{}), std::nullopt);
}

TEST(TableReaderTest, AcceptsSizesAsIntegersOrStrings) {
  auto text = [](std::string_view size) {
    return "[proxy]\nauth = \"passthrough\"\nmax_message_size = " + std::string(size) + "\n" +
           std::string(local_backend);
  };

  EXPECT_EQ(load_string(text("1048576"), "t").proxy.max_message_size, 1048576u);
  EXPECT_EQ(load_string(text("\"1024\""), "t").proxy.max_message_size, 1024u);
  EXPECT_EQ(load_string(text("\"64kB\""), "t").proxy.max_message_size, 65536u);
  EXPECT_EQ(only_issue(text("\"64 kB\"")),
            "test.toml:3: proxy.max_message_size: expected a size like \"64kB\" (units kB, MB, "
            "GB, powers of 1024) or a number of bytes");
  EXPECT_EQ(only_issue(text("-5")),
            "test.toml:3: proxy.max_message_size: expected a size like \"64kB\" (units kB, MB, "
            "GB, powers of 1024) or a number of bytes");
}

TEST(TableReaderTest, DoesNotSuggestABackendForAnUnrelatedName) {
  auto issue = only_issue(std::string(local_backend) +
                          "[[user]]\nname = \"u\"\npassword = \"p\"\n[user.backends.rds]\n");

  EXPECT_EQ(issue, "test.toml:9: user[0].backends.rds: no [[backend]] is named 'rds'");
}

TEST(TableReaderTest, ReportsExpansionFailuresInEveryKindOfValue) {
  testing::scoped_env unset("PGF_TEST_UNSET", nullptr);

  auto issues = testing::issues_of(R"([proxy]
auth = "passthrough"
listen = "${PGF_TEST_UNSET}"
pool_mode = "${PGF_TEST_UNSET}"
connect_timeout = "${PGF_TEST_UNSET}"
max_message_size = "${PGF_TEST_UNSET}"
workers = "${PGF_TEST_UNSET}"
)" + std::string(local_backend));

  ASSERT_EQ(issues.size(), 5u) << testing::joined(issues);
  for (std::size_t i = 0; i < issues.size(); ++i) {
    EXPECT_EQ(issues[i].line, i + 3);
    EXPECT_EQ(issues[i].message,
              "environment variable 'PGF_TEST_UNSET' is not set and has no default");
  }
}

}  // namespace
}  // namespace pgf::config::detail
