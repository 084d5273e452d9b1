// parse_duration and parse_size, and their inverses used by describe().
#include <gtest/gtest.h>

#include "proxy/config/config.hpp"
#include "proxy/config/config_detail.hpp"

namespace pgf::config {
namespace {

using namespace std::chrono_literals;

TEST(DurationTest, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("250ms"), duration(250ms));
  EXPECT_EQ(parse_duration("2s"), duration(2s));
  EXPECT_EQ(parse_duration("1m"), duration(1min));
  EXPECT_EQ(parse_duration("1h"), duration(1h));
  EXPECT_EQ(parse_duration("1d"), duration(24h));
  EXPECT_EQ(parse_duration("0s"), duration(0));
  EXPECT_EQ(parse_duration("90m"), duration(90min));
}

TEST(DurationTest, RefusesMissingOrUnknownUnits) {
  for (auto text : {"", "250", "ms", "1.5s", "-1s", "+1s", "1 s", " 1s", "1s ", "1S", "1sec", "1w",
                    "1ms5", "s1"}) {
    EXPECT_EQ(parse_duration(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(DurationTest, RefusesOverflow) {
  EXPECT_EQ(parse_duration("99999999999999999999ms"), std::nullopt);
  EXPECT_EQ(parse_duration("999999999999999999d"), std::nullopt);
}

TEST(DurationTest, FormatsWithTheLargestExactUnit) {
  EXPECT_EQ(detail::format_duration(250ms), "250ms");
  EXPECT_EQ(detail::format_duration(2s), "2s");
  EXPECT_EQ(detail::format_duration(1500ms), "1500ms");
  EXPECT_EQ(detail::format_duration(10min), "10m");
  EXPECT_EQ(detail::format_duration(1h), "1h");
  EXPECT_EQ(detail::format_duration(48h), "2d");
  EXPECT_EQ(detail::format_duration(duration(0)), "0ms");
}

TEST(SizeTest, ParsesBytesAndUnitsInPowersOf1024) {
  EXPECT_EQ(parse_size("1024"), 1024u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("10B"), 10u);
  EXPECT_EQ(parse_size("64kB"), 64u * 1024);
  EXPECT_EQ(parse_size("16MB"), 16u * 1024 * 1024);
  EXPECT_EQ(parse_size("1GB"), 1024u * 1024 * 1024);
  EXPECT_EQ(parse_size("2TB"), 2ull * 1024 * 1024 * 1024 * 1024);
}

TEST(SizeTest, RefusesMalformedSizes) {
  for (auto text : {"", "kB", "64kb", "64KB", "1.5MB", "-1", "1 MB", "16M", "1GiB"}) {
    EXPECT_EQ(parse_size(text), std::nullopt) << '"' << text << '"';
  }
  EXPECT_EQ(parse_size("99999999999999999999"), std::nullopt);
  EXPECT_EQ(parse_size("99999999999TB"), std::nullopt);
}

TEST(SizeTest, FormatsWithTheLargestExactUnit) {
  EXPECT_EQ(detail::format_size(1024u * 1024 * 1024), "1GB");
  EXPECT_EQ(detail::format_size(64u * 1024), "64kB");
  EXPECT_EQ(detail::format_size(1536u * 1024), "1536kB");
  EXPECT_EQ(detail::format_size(1000), "1000");
}

}  // namespace
}  // namespace pgf::config
