// Backend URLs read with libpq's own parser, so that every form libpq accepts (URLs and
// key=value strings) means here exactly what it means to psql. A URL may hold a password:
// nothing here returns or reports any part of one.
#include <libpq-fe.h>

#include <charconv>
#include <memory>

#include "proxy/config/config_detail.hpp"

namespace pgf::config::detail {

namespace {

struct conninfo_deleter {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using conninfo_ptr = std::unique_ptr<PQconninfoOption, conninfo_deleter>;

struct libpq_message_deleter {
  void operator()(char* message) const { PQfreemem(message); }
};

std::optional<std::string> option(const PQconninfoOption* options, std::string_view keyword) {
  for (const auto* it = options; it->keyword != nullptr; ++it) {
    if (keyword == it->keyword && it->val != nullptr) {
      return std::string(it->val);
    }
  }
  return std::nullopt;
}

bool is_libpq_keyword(std::string_view word) {
  char* message = nullptr;
  conninfo_ptr options(PQconninfoParse("", &message));
  std::unique_ptr<char, libpq_message_deleter> owned(message);
  for (const auto* it = options.get(); it != nullptr && it->keyword != nullptr; ++it) {
    if (word == it->keyword) {
      return true;
    }
  }
  return false;
}

bool is_identifier(std::string_view word) {
  for (char c : word) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return !word.empty();
}

// libpq quotes pieces of the input in its messages, and a piece may be the password
// ("invalid percent-encoded token: "s3cr%t"") or the whole URL. Keep a quoted piece only
// when it is punctuation, an option keyword, or the unknown key libpq complains about.
bool may_quote(std::string_view before, std::string_view piece) {
  if (piece == "=" || piece == "]" || is_libpq_keyword(piece)) {
    return true;
  }
  bool names_a_key = before.ends_with("invalid URI query parameter: ") ||
                     before.ends_with("invalid connection option ");
  return names_a_key && is_identifier(piece);
}

std::string redact_quoted(std::string_view message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.remove_suffix(1);
  }

  std::string out;
  std::size_t at = 0;
  while (at < message.size()) {
    auto open = message.find('"', at);
    auto close = open == std::string_view::npos ? open : message.find('"', open + 1);
    if (close == std::string_view::npos) {
      out += message.substr(at);
      break;
    }
    auto piece = message.substr(open + 1, close - open - 1);
    out += message.substr(at, open - at);
    out +=
        may_quote(message.substr(0, open), piece) ? "\"" + std::string(piece) + "\"" : "<redacted>";
    at = close + 1;
  }
  return out;
}

conninfo_ptr parse_conninfo(const std::string& url, std::string& reason) {
  char* message = nullptr;
  conninfo_ptr options(PQconninfoParse(url.c_str(), &message));
  std::unique_ptr<char, libpq_message_deleter> owned(message);
  if (!options) {
    reason =
        message != nullptr ? redact_quoted(message) : "libpq could not parse it (out of memory)";
  }
  return options;
}

std::optional<long> parse_integer(const std::string& text) {
  long value = 0;
  auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || rest != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

bool lists_several(const std::optional<std::string>& value) {
  return value && value->find(',') != std::string::npos;
}

std::optional<std::string> check_sslmode(const std::string& sslmode) {
  if (sslmode == "disable" || sslmode == "allow" || sslmode == "prefer") {
    return std::nullopt;
  }
  if (sslmode == "require" || sslmode == "verify-ca" || sslmode == "verify-full") {
    return "TLS to backends is not supported yet; use sslmode=disable or prefer";
  }
  return "sslmode '" + sslmode +
         "' is not one of disable, allow, prefer, require, verify-ca, verify-full";
}

}  // namespace

std::variant<backend_endpoint, url_failure> parse_backend_url(const std::string& url) {
  std::string reason;
  auto options = parse_conninfo(url, reason);
  if (!options) {
    return url_failure{"libpq cannot read the URL: " + reason};
  }

  auto host = option(options.get(), "host");
  auto hostaddr = option(options.get(), "hostaddr");
  auto port = option(options.get(), "port");
  if (lists_several(host) || lists_several(hostaddr) || lists_several(port)) {
    return url_failure{"the URL lists several hosts; give each one its own [[backend]]"};
  }
  if (!host && !hostaddr) {
    return url_failure{"the URL names no host (for a Unix socket write host=/var/run/postgresql)"};
  }

  backend_endpoint endpoint;
  // A numeric hostaddr is where libpq would really connect; host then only names it.
  endpoint.host = hostaddr ? *hostaddr : *host;
  if (port) {
    auto number = parse_integer(*port);
    if (!number || *number < 1 || *number > 65535) {
      return url_failure{"the URL's port must be a number between 1 and 65535"};
    }
    endpoint.port = static_cast<std::uint16_t>(*number);
  }

  endpoint.user = option(options.get(), "user");
  endpoint.password = option(options.get(), "password");
  endpoint.dbname = option(options.get(), "dbname");
  endpoint.sslmode = option(options.get(), "sslmode").value_or("prefer");
  if (auto problem = check_sslmode(endpoint.sslmode)) {
    return url_failure{*problem};
  }

  if (auto timeout = option(options.get(), "connect_timeout")) {
    auto seconds = parse_integer(*timeout);
    if (!seconds) {
      return url_failure{"the URL's connect_timeout must be a whole number of seconds"};
    }
    // libpq reads zero or a negative value as "wait forever".
    if (*seconds > 0) {
      endpoint.connect_timeout = std::chrono::seconds(*seconds);
    }
  }
  return endpoint;
}

std::string masked_url(const std::string& url) {
  std::string reason;
  auto options = parse_conninfo(url, reason);
  if (!options) {
    return "****";
  }

  bool has_secret = option(options.get(), "password") || option(options.get(), "sslpassword");
  if (!has_secret) {
    return url;
  }

  std::string out;
  for (const auto* it = options.get(); it->keyword != nullptr; ++it) {
    if (it->val == nullptr) {
      continue;
    }
    std::string_view keyword = it->keyword;
    bool is_secret = keyword == "password" || keyword == "sslpassword";
    std::string value;
    for (char c : std::string_view(is_secret ? "****" : it->val)) {
      if (c == '\'' || c == '\\') {
        value += '\\';
      }
      value += c;
    }
    out += (out.empty() ? "" : " ") + std::string(keyword) + "='" + value + "'";
  }
  return out;
}

}  // namespace pgf::config::detail
