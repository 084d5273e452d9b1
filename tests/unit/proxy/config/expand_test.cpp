// ${VAR} and ${VAR:-default} expansion on its own.
#include <gtest/gtest.h>

#include "proxy/config/config_detail.hpp"
#include "tests/unit/proxy/config/config_test_support.hpp"

namespace pgf::config::detail {
namespace {

using testing::scoped_env;

std::string expanded(std::string_view text) {
  auto result = expand_env(text);
  if (auto* failure = std::get_if<expand_failure>(&result)) {
    ADD_FAILURE() << "failed: " << failure->reason;
    return {};
  }
  return std::get<std::string>(result);
}

std::string failure_of(std::string_view text) {
  auto result = expand_env(text);
  if (auto* failure = std::get_if<expand_failure>(&result)) {
    return failure->reason;
  }
  ADD_FAILURE() << "expanded to " << std::get<std::string>(result);
  return {};
}

TEST(ExpandTest, ReplacesVariables) {
  scoped_env host("PGF_TEST_HOST", "db.internal");
  scoped_env port("PGF_TEST_PORT", "5433");

  EXPECT_EQ(expanded("${PGF_TEST_HOST}:${PGF_TEST_PORT}"), "db.internal:5433");
  EXPECT_EQ(expanded("no variables"), "no variables");
  EXPECT_EQ(expanded(""), "");
}

TEST(ExpandTest, UsesTheDefaultWhenUnsetOrEmpty) {
  scoped_env unset("PGF_TEST_UNSET", nullptr);
  scoped_env empty("PGF_TEST_EMPTY", "");
  scoped_env set("PGF_TEST_SET", "value");

  EXPECT_EQ(expanded("${PGF_TEST_UNSET:-fallback}"), "fallback");
  EXPECT_EQ(expanded("${PGF_TEST_EMPTY:-fallback}"), "fallback");
  EXPECT_EQ(expanded("${PGF_TEST_SET:-fallback}"), "value");
  EXPECT_EQ(expanded("${PGF_TEST_UNSET:-}"), "");
  EXPECT_EQ(expanded("${PGF_TEST_UNSET:-a:-b}"), "a:-b");
}

TEST(ExpandTest, KeepsAnEmptyValueWithoutDefault) {
  scoped_env empty("PGF_TEST_EMPTY", "");

  EXPECT_EQ(expanded("[${PGF_TEST_EMPTY}]"), "[]");
}

TEST(ExpandTest, DoubleDollarIsALiteralDollar) {
  scoped_env set("PGF_TEST_SET", "value");

  EXPECT_EQ(expanded("$$"), "$");
  EXPECT_EQ(expanded("$${PGF_TEST_SET}"), "${PGF_TEST_SET}");
  EXPECT_EQ(expanded("$$${PGF_TEST_SET}"), "$value");
  EXPECT_EQ(expanded("$$$${PGF_TEST_SET}"), "$${PGF_TEST_SET}");
  EXPECT_EQ(expanded("cost: 5$ or $5"), "cost: 5$ or $5");
}

TEST(ExpandTest, DoesNotExpandTheValueAgain) {
  scoped_env outer("PGF_TEST_OUTER", "${PGF_TEST_INNER}");
  scoped_env inner("PGF_TEST_INNER", "inner");

  EXPECT_EQ(expanded("${PGF_TEST_OUTER}"), "${PGF_TEST_INNER}");
}

TEST(ExpandTest, NamesAnUnsetVariable) {
  scoped_env unset("PGF_TEST_UNSET", nullptr);

  EXPECT_EQ(failure_of("x${PGF_TEST_UNSET}y"),
            "environment variable 'PGF_TEST_UNSET' is not set and has no default");
}

TEST(ExpandTest, RefusesMalformedReferencesWithoutQuotingThem) {
  EXPECT_EQ(failure_of("${PGF_TEST"),
            "a \"${\" has no closing \"}\" (write \"$$\" for a literal \"$\")");

  for (auto text : {"${}", "${:-secret-default}", "${1ABC}", "${A B}", "${A:secret}"}) {
    auto reason = failure_of(text);
    EXPECT_NE(reason.find("needs a variable name"), std::string::npos) << text;
    EXPECT_EQ(reason.find("secret"), std::string::npos) << reason;
  }
}

}  // namespace
}  // namespace pgf::config::detail
