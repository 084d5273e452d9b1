// Listen addresses as written in the file ("127.0.0.1:6432", "[::1]:6432", "*:6432") and the
// loopback test that decides whether the admin port may run without a token.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>

#include "proxy/config/config_detail.hpp"

namespace pgf::config::detail {

namespace {

constexpr std::string_view listen_example = "expected \"host:port\", as in \"127.0.0.1:6432\"";

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || rest != end || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::variant<listen_address, std::string> parse_listen(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || text.substr(close + 1, 1) != ":") {
      return std::string(listen_example) + " or \"[::1]:6432\"";
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return std::string(listen_example);
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return std::string("write an IPv6 address in brackets, as in \"[::1]:6432\"");
    }
  }

  if (host.empty()) {
    return std::string(listen_example) + " (\"*:6432\" listens on every address)";
  }
  auto number = parse_port(port);
  if (!number) {
    return std::string("the port must be a number between 0 and 65535");
  }
  return listen_address{std::string(host), *number};
}

std::string format_listen(const listen_address& address) {
  auto port = std::to_string(address.port);
  if (address.host.find(':') != std::string::npos) {
    return "[" + address.host + "]:" + port;
  }
  return address.host + ":" + port;
}

bool is_loopback_host(std::string_view host) {
  if (equals_ignoring_case(host, "localhost")) {
    return true;
  }

  std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) {
      return true;
    }
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace pgf::config::detail
