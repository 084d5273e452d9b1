// `pgfailover ctl`: the operator's client for the admin HTTP API. This header holds the
// parts without I/O (address and timeout parsing, the request each command makes, how an
// answer is printed) so that they can be tested with literals; run() adds the network.
//
// Exit codes: 0 done; 1 the server answered and refused (any non-2xx); 2 no usable answer
// (bad address, connection refused, timeout, an answer that is not HTTP or not JSON).
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/beast/http/verb.hpp>

namespace pgf::ctl {

constexpr std::uint16_t default_admin_port = 6480;
constexpr std::string_view default_admin_address = "127.0.0.1:6480";
constexpr std::chrono::milliseconds default_timeout{60000};
// Longer waits are refused: a mistyped unit should not leave a terminal hanging for days.
constexpr std::chrono::milliseconds max_timeout{24 * 3600 * 1000};

struct admin_address {
  std::string host;  // a name or a numeric address; IPv6 without the brackets
  std::uint16_t port = default_admin_port;
};

// Parses "host", "host:port", "http://host:port" (an optional trailing "/") and
// "[::1]:port"; a missing port means 6480. Returns the reason when `text` is refused.
std::variant<admin_address, std::string> parse_admin_address(std::string_view text);
// "host:port", or "[v6]:port": for messages and the Host header.
std::string format_admin_address(const admin_address& address);

// Parses "30s", "500ms", "2m" (the units of the configuration file) or plain seconds
// ("30"). Zero, malformed and over max_timeout give nullopt.
std::optional<std::chrono::milliseconds> parse_timeout(std::string_view text);
// "60s" when whole seconds, else "1500ms".
std::string format_timeout(std::chrono::milliseconds timeout);

// True when `name` is a backend name as the configuration allows it (letters, digits, '-'
// and '_'), which can go into a URL path as it is. The admin server matches the path
// literally, so other names are refused here rather than percent-encoded.
bool is_backend_name(std::string_view name);

enum class command_kind { status, events, switchover, disable, enable, pause, resume, reload };

// One ctl command as typed. Every member has an initializer so that a designated
// initializer may leave any of them out without -Wmissing-field-initializers.
struct command {
  command_kind kind = command_kind::status;
  std::string backend{};  // switchover's target; disable's and enable's backend
  bool force = false;     // switchover and disable only
  std::string reason{};   // empty: none sent
};

// One call to the admin API.
struct request {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string path;
  std::string body;  // JSON; empty sends no body
};

// The server's answer: any HTTP status, the body as received.
struct reply {
  int status = 0;
  std::string body;
};

// The request `cmd` makes. The body is serialized with Boost.JSON. Precondition: for
// disable and enable, is_backend_name(cmd.backend).
request make_request(const command& cmd);
// "GET /status", as errors name the call.
std::string describe_request(const request& req);

// The first lines of a refusal for stderr: "pgfailover ctl: POST /switchover: HTTP 409:
// <the body's "error">", then each string of its "issues" array on a line of its own,
// indented by two spaces.
std::string render_error(const request& req, const reply& answer);

struct output_options {
  bool is_json = false;    // print the body as the server sent it
  bool has_token = false;  // for the hint on 401
};

// Prints `answer` to `out` (results) and `err` (refusals, problems) and returns the exit
// code. With is_json the body goes to `out` verbatim, also for a refusal.
int report(const command& cmd, const request& req, const reply& answer, const output_options& opts,
           std::ostream& out, std::ostream& err);

struct options {
  std::string admin{default_admin_address};
  std::optional<std::string> token;  // never printed
  bool is_json = false;
  std::chrono::milliseconds timeout = default_timeout;
};

// Runs `cmd` against the admin API: one HTTP exchange, then report(). Prints to stdout and
// stderr and returns the exit code. Waits at most opts.timeout, a slow name lookup aside.
int run(const options& opts, const command& cmd);

}  // namespace pgf::ctl
