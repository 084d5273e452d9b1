// Listen addresses and the loopback test behind the admin-token rule.
#include <gtest/gtest.h>

#include "proxy/config/config_detail.hpp"

namespace pgf::config::detail {
namespace {

listen_address parsed(std::string_view text) {
  auto result = parse_listen(text);
  if (auto* reason = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << text << ": " << *reason;
    return {};
  }
  return std::get<listen_address>(result);
}

std::string reason_for(std::string_view text) {
  auto result = parse_listen(text);
  if (auto* reason = std::get_if<std::string>(&result)) {
    return *reason;
  }
  ADD_FAILURE() << text << " parsed";
  return {};
}

TEST(ListenTest, ParsesHostAndPort) {
  auto v4 = parsed("127.0.0.1:6432");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 6432);

  auto v6 = parsed("[::1]:6433");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 6433);

  auto any = parsed("*:0");
  EXPECT_EQ(any.host, "*");
  EXPECT_EQ(any.port, 0);

  EXPECT_EQ(parsed("db.example.com:65535").port, 65535);
}

TEST(ListenTest, RefusesMalformedAddresses) {
  EXPECT_EQ(reason_for("127.0.0.1"), "expected \"host:port\", as in \"127.0.0.1:6432\"");
  EXPECT_EQ(reason_for("::1:6432"), "write an IPv6 address in brackets, as in \"[::1]:6432\"");
  EXPECT_EQ(reason_for("[::1]6432"),
            "expected \"host:port\", as in \"127.0.0.1:6432\" or \"[::1]:6432\"");
  EXPECT_EQ(reason_for(":6432"),
            "expected \"host:port\", as in \"127.0.0.1:6432\" (\"*:6432\" "
            "listens on every address)");
  for (auto text : {"h:", "h:65536", "h:-1", "h:12a", "h: 1"}) {
    EXPECT_EQ(reason_for(text), "the port must be a number between 0 and 65535") << text;
  }
}

TEST(ListenTest, FormatsIpv6InBrackets) {
  EXPECT_EQ(format_listen({"::1", 6432}), "[::1]:6432");
  EXPECT_EQ(format_listen({"127.0.0.1", 0}), "127.0.0.1:0");
}

TEST(ListenTest, RecognisesLoopback) {
  for (auto host :
       {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (auto host : {"0.0.0.0", "*", "::", "10.0.0.1", "128.0.0.1", "localhost.example.com",
                    "::ffff:10.0.0.1", ""}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

}  // namespace
}  // namespace pgf::config::detail
