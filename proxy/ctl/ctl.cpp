// `pgfailover ctl`: parsing what the operator typed, the request each command makes, and
// turning the answer into output and an exit code.
#include "proxy/ctl/ctl.hpp"

#include <algorithm>
#include <charconv>
#include <iostream>

#include <fmt/format.h>
#include <boost/beast/http/status.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "proxy/config/config.hpp"
#include "proxy/ctl/admin_client.hpp"
#include "proxy/ctl/render.hpp"

namespace pgf::ctl {

namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view address_example =
    "expected \"host:port\", \"http://host:port\" or \"[::1]:6480\"";
// A refusal whose body has no "error" member shows at most this much of the body.
constexpr std::size_t max_shown_body = 200;

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

// Port 0 means "any free port" to a server; a client cannot connect to it.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || rest != end || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

// Splits "host", "host:port", "[v6]" or "[v6]:port"; the port is nullopt when absent.
std::variant<std::pair<std::string_view, std::optional<std::string_view>>, std::string>
split_host_port(std::string_view text) {
  using parts = std::pair<std::string_view, std::optional<std::string_view>>;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return std::string("an IPv6 address needs its closing ']', as in \"[::1]:6480\"");
    }
    auto after = text.substr(close + 1);
    if (after.empty()) {
      return parts{text.substr(1, close - 1), std::nullopt};
    }
    if (!after.starts_with(':')) {
      return std::string(address_example);
    }
    return parts{text.substr(1, close - 1), after.substr(1)};
  }

  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return parts{text, std::nullopt};
  }
  if (text.find(':', colon + 1) != std::string_view::npos) {
    return std::string("write an IPv6 address in brackets, as in \"[::1]:6480\"");
  }
  return parts{text.substr(0, colon), text.substr(colon + 1)};
}

// {"reason": ..., "force": true} with only the members given; empty when none is.
std::string reason_body(const std::string& reason, bool force = false) {
  json::object body;
  if (!reason.empty()) {
    body["reason"] = reason;
  }
  if (force) {
    body["force"] = true;
  }
  return body.empty() ? std::string() : json::serialize(body);
}

// The command as the operator would say it, for the line that reports its result.
std::string describe_command(const command& cmd) {
  switch (cmd.kind) {
    case command_kind::status:
      return "status";
    case command_kind::events:
      return "events";
    case command_kind::switchover:
      return fmt::format("switchover to {}", cmd.backend);
    case command_kind::disable:
      return fmt::format("disable {}", cmd.backend);
    case command_kind::enable:
      return fmt::format("enable {}", cmd.backend);
    case command_kind::pause:
      return "pause";
    case command_kind::resume:
      return "resume";
    case command_kind::reload:
      return "reload";
  }
  return "ctl";
}

// The body's first line, trimmed and shortened: for answers that are not our JSON.
std::string body_excerpt(std::string_view body) {
  auto line = body.substr(0, body.find('\n'));
  auto first = line.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) {
    return {};
  }
  line = line.substr(first, line.find_last_not_of(" \t\r") + 1 - first);
  if (line.size() > max_shown_body) {
    return printable(line.substr(0, max_shown_body)) + "...";
  }
  return printable(line);
}

std::string error_message(const json::value& body, const reply& answer) {
  if (const auto* object = body.if_object()) {
    if (const auto* error = object->if_contains("error"); error && error->is_string()) {
      return printable(error->get_string());
    }
  }
  if (auto excerpt = body_excerpt(answer.body); !excerpt.empty()) {
    return excerpt;
  }
  auto phrase = http::obsolete_reason(static_cast<http::status>(answer.status));
  return std::string(phrase);
}

bool is_success(const reply& answer) {
  return answer.status >= 200 && answer.status < 300;
}

std::string render_answer(const command& cmd, const json::value& body) {
  switch (cmd.kind) {
    case command_kind::status:
      return render_status(body);
    case command_kind::events:
      return render_events(body);
    default:
      return render_action(describe_command(cmd), body);
  }
}

}  // namespace

std::variant<admin_address, std::string> parse_admin_address(std::string_view text) {
  if (auto scheme_end = text.find("://"); scheme_end != std::string_view::npos) {
    auto scheme = text.substr(0, scheme_end);
    if (!equals_ignoring_case(scheme, "http")) {
      return fmt::format("the admin API speaks plain HTTP; \"{}://\" is not supported",
                         printable(scheme));
    }
    text.remove_prefix(scheme_end + 3);
    if (text.ends_with('/')) {
      text.remove_suffix(1);
    }
  }

  auto split = split_host_port(text);
  if (auto* problem = std::get_if<std::string>(&split)) {
    return *problem;
  }
  auto [host, port] = std::get<0>(split);
  if (host.empty() || host.find_first_of(" \t/@?#[]") != std::string_view::npos) {
    return std::string(address_example);
  }
  admin_address out{std::string(host), default_admin_port};
  if (port) {
    auto number = parse_port(*port);
    if (!number) {
      return std::string("the port must be a number between 1 and 65535");
    }
    out.port = *number;
  }
  return out;
}

std::string format_admin_address(const admin_address& address) {
  if (address.host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", address.host, address.port);
  }
  return fmt::format("{}:{}", address.host, address.port);
}

std::optional<std::chrono::milliseconds> parse_timeout(std::string_view text) {
  std::optional<std::chrono::milliseconds> value;
  std::uint64_t seconds = 0;
  const auto* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(text.data(), end, seconds);
  if (!text.empty() && error == std::errc{} && rest == end) {
    // Compared in seconds first so that the multiplication cannot overflow.
    if (seconds > static_cast<std::uint64_t>(max_timeout.count() / 1000)) {
      return std::nullopt;
    }
    value = std::chrono::seconds(seconds);
  } else {
    value = config::parse_duration(text);
  }

  if (!value || value->count() <= 0 || *value > max_timeout) {
    return std::nullopt;
  }
  return value;
}

std::string format_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() % 1000 == 0) {
    return fmt::format("{}s", timeout.count() / 1000);
  }
  return fmt::format("{}ms", timeout.count());
}

bool is_backend_name(std::string_view name) {
  auto is_allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  };
  return !name.empty() && std::all_of(name.begin(), name.end(), is_allowed);
}

request make_request(const command& cmd) {
  switch (cmd.kind) {
    case command_kind::status:
      return {http::verb::get, "/status", {}};
    case command_kind::events:
      return {http::verb::get, "/events", {}};
    case command_kind::switchover: {
      json::object body{{"to", cmd.backend}, {"force", cmd.force}};
      if (!cmd.reason.empty()) {
        body["reason"] = cmd.reason;
      }
      return {http::verb::post, "/switchover", json::serialize(body)};
    }
    case command_kind::disable:
      return {http::verb::post, fmt::format("/backends/{}/disable", cmd.backend),
              reason_body(cmd.reason, cmd.force)};
    case command_kind::enable:
      return {http::verb::post, fmt::format("/backends/{}/enable", cmd.backend),
              reason_body(cmd.reason)};
    case command_kind::pause:
      return {http::verb::post, "/pause", reason_body(cmd.reason)};
    case command_kind::resume:
      return {http::verb::post, "/resume", reason_body(cmd.reason)};
    case command_kind::reload:
      return {http::verb::post, "/reload", reason_body(cmd.reason)};
  }
  return {http::verb::get, "/status", {}};
}

std::string describe_request(const request& req) {
  return fmt::format("{} {}", std::string_view(http::to_string(req.method)), req.path);
}

std::string render_error(const request& req, const reply& answer) {
  boost::system::error_code ec;
  auto body = json::parse(answer.body, ec);
  auto out = fmt::format("pgfailover ctl: {}: HTTP {}: {}\n", describe_request(req), answer.status,
                         error_message(body, answer));

  // reload's refusal lists the configuration's problems, one "FILE:LINE: KEY: message" each.
  const auto* object = body.if_object();
  const auto* issues = object ? object->if_contains("issues") : nullptr;
  if (issues && issues->is_array()) {
    for (const auto& issue : issues->get_array()) {
      if (issue.is_string()) {
        out += fmt::format("  {}\n", printable(issue.get_string()));
      }
    }
  }
  return out;
}

int report(const command& cmd, const request& req, const reply& answer, const output_options& opts,
           std::ostream& out, std::ostream& err) {
  if (opts.is_json) {
    out << answer.body;
    if (!answer.body.empty() && !answer.body.ends_with('\n')) {
      out << '\n';
    }
  }
  if (!is_success(answer)) {
    err << render_error(req, answer);
    if (answer.status == 401 && !opts.has_token) {
      err << "pgfailover ctl: no token was given: pass --token or set PGFAILOVER_TOKEN\n";
    }
    return 1;
  }
  if (opts.is_json) {
    return 0;
  }

  boost::system::error_code ec;
  auto body = json::parse(answer.body, ec);
  if (ec) {
    err << fmt::format("pgfailover ctl: {}: the answer is not JSON: {}\n", describe_request(req),
                       ec.message());
    return 2;
  }
  out << render_answer(cmd, body);
  return 0;
}

int run(const options& opts, const command& cmd) {
  auto parsed = parse_admin_address(opts.admin);
  if (auto* problem = std::get_if<std::string>(&parsed)) {
    std::cerr << fmt::format("pgfailover ctl: admin address \"{}\": {}\n", printable(opts.admin),
                             *problem);
    return 2;
  }
  bool names_backend = cmd.kind == command_kind::disable || cmd.kind == command_kind::enable;
  if (names_backend && !is_backend_name(cmd.backend)) {
    std::cerr << fmt::format(
        "pgfailover ctl: \"{}\" is not a backend name: letters, digits, '-' and '_' only\n",
        printable(cmd.backend));
    return 2;
  }

  auto req = make_request(cmd);
  const auto& token = opts.token;
  bool has_token = token && !token->empty();
  auto answer = exchange(std::get<admin_address>(parsed), req, token, opts.timeout);
  if (auto* problem = std::get_if<std::string>(&answer)) {
    std::cerr << fmt::format("pgfailover ctl: {}: {}\n", describe_request(req), *problem);
    return 2;
  }
  return report(cmd, req, std::get<reply>(answer), {opts.is_json, has_token}, std::cout, std::cerr);
}

}  // namespace pgf::ctl
