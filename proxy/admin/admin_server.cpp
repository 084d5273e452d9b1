// Admin server: the accept loop, one coroutine per connection, routing, the token check and
// the handlers that turn requests into admin_actions calls.
#include "proxy/admin/admin_server.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <exception>
#include <list>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace pgf::admin {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

namespace {

constexpr std::size_t max_reason_length = 1024;
// After an error answer the rest of the request is read and dropped for a moment, so that
// closing with unread bytes does not reset the connection before the client reads it.
constexpr auto linger_timeout = std::chrono::seconds(1);
constexpr std::size_t linger_bytes = 1024 * 1024;
constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

using digest = std::array<unsigned char, 32>;

std::optional<digest> sha256(std::string_view text) {
  digest out{};
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), out.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != out.size()) {
    return std::nullopt;
  }
  return out;
}

bool digests_match(const std::optional<digest>& a, const std::optional<digest>& b) {
  if (!a || !b) {
    return false;
  }
  return CRYPTO_memcmp(a->data(), b->data(), a->size()) == 0;
}

enum class route_kind {
  status,
  events,
  metrics,
  healthz,
  readyz,
  switchover,
  disable,
  enable,
  pause,
  resume,
  reload
};

struct route {
  route_kind kind;
  std::string_view pattern;  // the metrics label: the path with {name} for the backend
  http::verb method;
  std::string backend;  // disable and enable only
};

struct fixed_route {
  std::string_view path;
  route_kind kind;
  http::verb method;
};

constexpr std::array<fixed_route, 9> fixed_routes{{
    {"/status", route_kind::status, http::verb::get},
    {"/events", route_kind::events, http::verb::get},
    {"/metrics", route_kind::metrics, http::verb::get},
    {"/healthz", route_kind::healthz, http::verb::get},
    {"/readyz", route_kind::readyz, http::verb::get},
    {"/switchover", route_kind::switchover, http::verb::post},
    {"/pause", route_kind::pause, http::verb::post},
    {"/resume", route_kind::resume, http::verb::post},
    {"/reload", route_kind::reload, http::verb::post},
}};

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::optional<route> match_backend_route(std::string_view path) {
  constexpr std::string_view prefix = "/backends/";
  if (!path.starts_with(prefix)) {
    return std::nullopt;
  }
  auto rest = path.substr(prefix.size());
  auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) {
    return std::nullopt;
  }
  auto name = std::string(rest.substr(0, slash));
  auto action = rest.substr(slash + 1);
  if (action == "disable") {
    return route{route_kind::disable, "/backends/{name}/disable", http::verb::post, name};
  }
  if (action == "enable") {
    return route{route_kind::enable, "/backends/{name}/enable", http::verb::post, name};
  }
  return std::nullopt;
}

std::optional<route> match_route(std::string_view target) {
  auto path = path_of(target);
  for (const auto& r : fixed_routes) {
    if (r.path == path) {
      return route{r.kind, r.path, r.method, {}};
    }
  }
  return match_backend_route(path);
}

std::string format_endpoint(const tcp::endpoint& endpoint) {
  auto address = endpoint.address().to_string();
  if (endpoint.address().is_v6()) {
    return fmt::format("[{}]:{}", address, endpoint.port());
  }
  return fmt::format("{}:{}", address, endpoint.port());
}

response make_response(http::status status, unsigned version, std::string_view content_type,
                       std::string body) {
  response res{status, version};
  res.set(http::field::server, "pgfailover");
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

response make_json(http::status status, unsigned version, const json::value& body) {
  return make_response(status, version, "application/json", json::serialize(body) + "\n");
}

response make_error(http::status status, unsigned version, std::string_view message,
                    json::object detail = {}) {
  detail["error"] = message;
  return make_json(status, version, detail);
}

response make_result(const action_result& result, unsigned version) {
  // Only a real HTTP status may go on the wire; anything else is the implementation's bug.
  auto code = result.http_status;
  if (code < 200 || code > 599) {
    return make_error(http::status::internal_server_error, version,
                      fmt::format("action returned HTTP status {}", code));
  }
  auto status = static_cast<http::status>(code);
  if (!result.succeeded()) {
    return make_error(status, version, result.error, result.detail);
  }
  auto body = result.detail;
  body["ok"] = true;
  return make_json(status, version, body);
}

// The fields a POST body may carry. Every body is optional except /switchover's.
struct action_fields {
  std::string to;
  bool force = false;
  std::string reason;
};

std::optional<std::string> read_field(const json::object& body, std::string_view key,
                                      std::string& out) {
  auto it = body.find(key);
  if (it == body.end()) {
    return std::nullopt;
  }
  if (!it->value().is_string()) {
    return fmt::format("\"{}\" must be a string", key);
  }
  out = std::string(it->value().get_string());
  return std::nullopt;
}

// Parses a POST body into `out`; returns the message for a 400 when it is not acceptable.
std::optional<std::string> read_action_fields(std::string_view text, route_kind kind,
                                              action_fields& out) {
  bool is_switchover = kind == route_kind::switchover;
  bool takes_force = is_switchover || kind == route_kind::disable;
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    if (is_switchover) {
      return std::string("the body must be a JSON object with \"to\": the target backend");
    }
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto parsed = json::parse(text, ec);
  if (ec) {
    return fmt::format("the body is not valid JSON: {}", ec.message());
  }
  if (!parsed.is_object()) {
    return std::string("the body must be a JSON object");
  }

  const auto& body = parsed.get_object();
  for (const auto& member : body) {
    auto key = std::string_view(member.key());
    bool known =
        key == "reason" || (is_switchover && key == "to") || (takes_force && key == "force");
    if (!known) {
      return fmt::format("unknown field \"{}\"", key);
    }
  }
  if (auto error = read_field(body, "reason", out.reason)) {
    return error;
  }
  if (out.reason.size() > max_reason_length) {
    return fmt::format("\"reason\" is longer than {} bytes", max_reason_length);
  }
  if (is_switchover) {
    if (auto error = read_field(body, "to", out.to)) {
      return error;
    }
    if (out.to.empty()) {
      return std::string("\"to\" must name the target backend");
    }
  }
  if (auto it = body.find("force"); it != body.end()) {
    if (!it->value().is_bool()) {
      return std::string("\"force\" must be true or false");
    }
    out.force = it->value().get_bool();
  }
  return std::nullopt;
}

// The token from "Authorization: Bearer <token>"; the scheme is case-insensitive.
std::optional<std::string_view> bearer_token(const request& req) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) {
    return std::nullopt;
  }
  auto value = std::string_view(it->value());
  constexpr std::string_view scheme = "bearer ";
  if (value.size() < scheme.size() || !beast::iequals(value.substr(0, scheme.size()), scheme)) {
    return std::nullopt;
  }
  auto token = value.substr(scheme.size());
  auto first = token.find_first_not_of(' ');
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  token = token.substr(first);
  return token.substr(0, token.find_last_not_of(' ') + 1);
}

void log_action(const std::string& who, std::string_view path, std::string_view reason,
                const response& res) {
  auto code = res.result_int();
  if (code >= 200 && code < 300) {
    spdlog::info("admin_action who={} path={:?} reason={:?} status={} result=ok", who, path, reason,
                 code);
    return;
  }
  // The error text is the body's "error" member; the body is small and ours.
  boost::system::error_code ec;
  auto body = json::parse(res.body(), ec);
  std::string error;
  if (!ec && body.is_object() && body.get_object().contains("error") &&
      body.get_object().at("error").is_string()) {
    error = std::string(body.get_object().at("error").get_string());
  }
  spdlog::warn("admin_action who={} path={:?} reason={:?} status={} result=refused error={:?}", who,
               path, reason, code, error);
}

void log_coroutine_failure(std::exception_ptr failure) {
  if (!failure) {
    return;
  }
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    spdlog::error("admin_connection_failed error={:?}", e.what());
  }
}

}  // namespace

bool tokens_match(std::string_view presented, std::string_view expected) {
  return digests_match(sha256(presented), sha256(expected));
}

admin_server_options admin_server_options::from(const config::admin_settings& settings) {
  admin_server_options options;
  options.listen = settings.listen;
  options.token = settings.token;
  return options;
}

struct admin_server::state : std::enable_shared_from_this<state> {
  state(net::io_context& io, admin_actions& actions, metrics::metrics& metrics,
        admin_server_options options)
      : io(io), actions(actions), metrics(metrics), options(std::move(options)), acceptor(io) {
    if (this->options.token) {
      token_digest = sha256(*this->options.token);
    }
  }

  static net::awaitable<void> accept_loop(std::shared_ptr<state> self);
  static net::awaitable<void> serve(std::shared_ptr<state> self, tcp::socket socket);
  net::awaitable<response> handle(const request& req, const std::string& who);
  net::awaitable<response> answer_get(const route& r, unsigned version);
  net::awaitable<response> answer_post(const route& r, const request& req, const std::string& who);
  net::awaitable<action_result> run_action(const route& r, action_fields fields,
                                           const std::string& who);
  net::awaitable<void> answer_read_error(beast::tcp_stream& stream,
                                         const http::request_parser<http::string_body>& parser,
                                         beast::error_code ec, const std::string& who);
  bool is_authorized(const request& req) const;

  net::io_context& io;
  admin_actions& actions;
  metrics::metrics& metrics;
  admin_server_options options;
  std::optional<digest> token_digest;
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  bool closing = false;
  std::atomic<std::size_t> open_connections{0};
  std::chrono::steady_clock::time_point next_busy_warning{};  // one warning per 10 s
  std::list<beast::tcp_stream*> streams;                      // the open connections, for close()
};

namespace {

// Holds one of the max_connections places from accept to the end of the connection's
// coroutine, or to the destruction of its frame if the io_context stops first.
class connection_slot {
 public:
  explicit connection_slot(std::shared_ptr<admin_server::state> s) : state_(std::move(s)) {
    ++state_->open_connections;
  }
  connection_slot(connection_slot&& other) noexcept = default;
  connection_slot& operator=(connection_slot&&) = delete;
  ~connection_slot() {
    if (state_) {
      --state_->open_connections;
    }
  }

 private:
  std::shared_ptr<admin_server::state> state_;
};

// Keeps a connection's stream in the server's list while its coroutine runs.
class stream_registration {
 public:
  stream_registration(std::list<beast::tcp_stream*>& list, beast::tcp_stream& stream)
      : list_(list), it_(list.insert(list.end(), &stream)) {}
  stream_registration(const stream_registration&) = delete;
  stream_registration& operator=(const stream_registration&) = delete;
  ~stream_registration() { list_.erase(it_); }

 private:
  std::list<beast::tcp_stream*>& list_;
  std::list<beast::tcp_stream*>::iterator it_;
};

net::awaitable<void> serve_connection(std::shared_ptr<admin_server::state> self, tcp::socket socket,
                                      connection_slot slot);

// Reads and drops what the client still sends after an error answer, within bounds.
net::awaitable<void> linger(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(linger_timeout);
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (drained < linger_bytes) {
    auto [ec, n] = co_await stream.async_read_some(net::buffer(scratch), use_tuple);
    if (ec) {
      break;
    }
    drained += n;
  }
}

}  // namespace

net::awaitable<void> admin_server::state::accept_loop(std::shared_ptr<state> self) {
  net::steady_timer backoff(self->io);
  while (self->acceptor.is_open()) {
    auto [ec, socket] = co_await self->acceptor.async_accept(use_tuple);
    if (ec == net::error::operation_aborted || !self->acceptor.is_open()) {
      break;
    }
    if (ec) {
      // Out of file descriptors, typically: pause instead of spinning on the error.
      spdlog::error("admin_accept_failed error={:?}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }

    if (self->open_connections.load() >= self->options.max_connections) {
      // One non-blocking write of a fixed answer, so that a client (ctl, a scraper) is told
      // why instead of seeing a reset; it never waits on the client.
      static constexpr std::string_view busy =
          "HTTP/1.1 503 Service Unavailable\r\nServer: pgfailover\r\n"
          "Content-Type: application/json\r\nConnection: close\r\nContent-Length: 39\r\n\r\n"
          "{\"error\":\"too many admin connections\"}\n";
      boost::system::error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(net::buffer(busy), ignored);
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      self->metrics.count_admin_request("other", 503);
      auto now = std::chrono::steady_clock::now();
      if (now >= self->next_busy_warning) {
        self->next_busy_warning = now + std::chrono::seconds(10);
        spdlog::warn("admin_connection_refused reason=too_many_connections limit={}",
                     self->options.max_connections);
      }
      continue;
    }
    connection_slot slot(self);
    net::co_spawn(self->io, serve_connection(self, std::move(socket), std::move(slot)),
                  log_coroutine_failure);
  }
}

namespace {

net::awaitable<void> serve_connection(std::shared_ptr<admin_server::state> self, tcp::socket socket,
                                      connection_slot /*held*/) {
  boost::system::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  auto who = "admin:" + (ec ? std::string("unknown") : format_endpoint(remote));
  beast::tcp_stream stream(std::move(socket));
  stream_registration registration(self->streams, stream);
  // Headers and read-ahead only: a body goes straight into the request's string.
  beast::flat_buffer buffer(self->options.header_limit + 8 * 1024);

  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(self->options.header_limit));
    // The header first, without a body limit: Beast would refuse a Content-Length over the
    // limit before the header is complete, and the answer could not name the route.
    parser.body_limit(boost::none);
    stream.expires_after(self->options.request_timeout);
    auto [header_ec, header_n] =
        co_await http::async_read_header(stream, buffer, parser, use_tuple);
    beast::error_code read_ec = header_ec;
    if (!read_ec) {
      auto length = parser.content_length();
      if (length && *length > self->options.body_limit) {
        read_ec = http::error::body_limit;
      } else {
        parser.body_limit(self->options.body_limit);  // for a chunked body
        auto [body_ec, body_n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        read_ec = body_ec;
      }
    }
    if (read_ec) {
      co_await self->answer_read_error(stream, parser, read_ec, who);
      co_return;
    }

    auto req = parser.release();
    auto res = co_await self->handle(req, who);
    res.keep_alive(req.keep_alive() && !self->closing);
    res.prepare_payload();
    stream.expires_after(self->options.request_timeout);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, use_tuple);
    if (write_ec || !res.keep_alive()) {
      break;
    }
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

net::awaitable<void> admin_server::state::answer_read_error(
    beast::tcp_stream& stream, const http::request_parser<http::string_body>& parser,
    beast::error_code ec, const std::string& who) {
  // A client that went away, went quiet past the deadline, or was closed by close().
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof || closing) {
    co_return;
  }

  auto status = http::status::bad_request;
  auto message = fmt::format("malformed HTTP request: {}", ec.message());
  if (ec == http::error::body_limit) {
    status = http::status::payload_too_large;
    message = fmt::format("the request body is larger than {} bytes", options.body_limit);
  } else if (ec == http::error::header_limit) {
    status = http::status::request_header_fields_too_large;
    message = fmt::format("the request headers are larger than {} bytes", options.header_limit);
  }

  std::optional<route> matched;
  std::string path = "-";
  if (parser.is_header_done()) {
    path = std::string(path_of(parser.get().target()));
    matched = match_route(parser.get().target());
  }
  auto res = make_error(status, 11, message);
  res.keep_alive(false);
  res.prepare_payload();
  metrics.count_admin_request(matched ? matched->pattern : "other", res.result_int());
  if (matched && matched->method == http::verb::post) {
    log_action(who, path, "", res);
  } else {
    spdlog::debug("admin_bad_request who={} path={:?} status={} error={:?}", who, path,
                  res.result_int(), message);
  }

  stream.expires_after(options.request_timeout);
  auto [write_ec, n] = co_await http::async_write(stream, res, use_tuple);
  if (!write_ec) {
    co_await linger(stream);
  }
}

net::awaitable<response> admin_server::state::handle(const request& req, const std::string& who) {
  auto version = req.version();
  auto matched = match_route(req.target());
  if (!matched) {
    metrics.count_admin_request("other", 404);
    co_return make_error(http::status::not_found, version, "no such path");
  }

  response res;
  if (req.method() != matched->method) {
    res = make_error(http::status::method_not_allowed, version,
                     fmt::format("{} takes {} only", matched->pattern,
                                 std::string_view(http::to_string(matched->method))));
    res.set(http::field::allow, http::to_string(matched->method));
  } else if (matched->method == http::verb::get) {
    res = co_await answer_get(*matched, version);
  } else {
    res = co_await answer_post(*matched, req, who);
  }
  metrics.count_admin_request(matched->pattern, res.result_int());
  co_return res;
}

net::awaitable<response> admin_server::state::answer_get(const route& r, unsigned version) {
  switch (r.kind) {
    case route_kind::status: {
      auto body = co_await actions.status();
      co_return make_json(http::status::ok, version, body);
    }
    case route_kind::events:
      co_return make_json(http::status::ok, version, actions.events());
    case route_kind::metrics:
      co_await actions.refresh_metrics();
      co_return make_response(http::status::ok, version, metrics_content_type, metrics.serialize());
    case route_kind::healthz:
      co_return make_response(http::status::ok, version, "text/plain; charset=utf-8", "ok\n");
    case route_kind::readyz:
      if (actions.ready()) {
        co_return make_json(http::status::ok, version, json::object{{"ready", true}});
      }
      co_return make_json(http::status::service_unavailable, version,
                          json::object{{"ready", false}, {"error", "no active backend"}});
    default:
      co_return make_error(http::status::internal_server_error, version, "unrouted request");
  }
}

bool admin_server::state::is_authorized(const request& req) const {
  if (!options.token) {
    return true;
  }
  auto presented = bearer_token(req);
  // Hashing even when the header is missing keeps the two refusals equally fast.
  return digests_match(sha256(presented.value_or("")), token_digest) && presented.has_value();
}

net::awaitable<response> admin_server::state::answer_post(const route& r, const request& req,
                                                          const std::string& who) {
  auto version = req.version();
  auto path = path_of(req.target());
  if (!is_authorized(req)) {
    auto res = make_error(http::status::unauthorized, version,
                          "this call needs \"Authorization: Bearer <token>\" with the admin token");
    res.set(http::field::www_authenticate, "Bearer realm=\"pgfailover\"");
    log_action(who, path, "", res);
    co_return res;
  }

  action_fields fields;
  if (auto problem = read_action_fields(req.body(), r.kind, fields)) {
    auto res = make_error(http::status::bad_request, version, *problem);
    log_action(who, path, "", res);
    co_return res;
  }

  auto reason = fields.reason;
  action_result result;
  try {
    result = co_await run_action(r, std::move(fields), who);
  } catch (const std::exception& e) {
    spdlog::error("admin_action_failed who={} path={:?} error={:?}", who, path, e.what());
    result = action_result::failure(500, fmt::format("internal error: {}", e.what()));
  }
  auto res = make_result(result, version);
  log_action(who, path, reason, res);
  co_return res;
}

net::awaitable<action_result> admin_server::state::run_action(const route& r, action_fields fields,
                                                              const std::string& who) {
  switch (r.kind) {
    case route_kind::switchover:
      co_return co_await actions.switchover(std::move(fields.to), fields.force,
                                            std::move(fields.reason), who);
    case route_kind::disable:
      co_return co_await actions.disable(r.backend, fields.force, std::move(fields.reason), who);
    case route_kind::enable:
      co_return co_await actions.enable(r.backend, std::move(fields.reason), who);
    case route_kind::pause:
      co_return co_await actions.pause(std::move(fields.reason), who);
    case route_kind::resume:
      co_return co_await actions.resume(std::move(fields.reason), who);
    case route_kind::reload:
      co_return co_await actions.reload(std::move(fields.reason), who);
    default:
      co_return action_result::failure(500, "unrouted request");
  }
}

admin_server::admin_server(net::io_context& io, admin_actions& actions, metrics::metrics& metrics,
                           admin_server_options options)
    : state_(std::make_shared<state>(io, actions, metrics, std::move(options))) {}

admin_server::~admin_server() {
  close();
}

void admin_server::open() {
  auto& s = *state_;
  auto host = s.options.listen.host == "*" ? std::string("0.0.0.0") : s.options.listen.host;
  auto address = fmt::format("{}:{}", host, s.options.listen.port);
  // Start-up only, before the io_context serves anything: a blocking lookup is harmless.
  tcp::resolver resolver(s.io);
  boost::system::error_code ec;
  auto results =
      resolver.resolve(host, std::to_string(s.options.listen.port), tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(fmt::format("cannot resolve admin listen address {}: {}", address,
                                         ec ? ec.message() : "no address"));
  }

  auto endpoint = results.begin()->endpoint();
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    s.acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen on admin address {}: {}", address, ec.message()));
  }
  s.port = s.acceptor.local_endpoint().port();
  spdlog::info("admin_listening address={} token={}", format_endpoint(s.acceptor.local_endpoint()),
               s.options.token ? "required" : "none");
}

void admin_server::start() {
  net::co_spawn(state_->io, state::accept_loop(state_), log_coroutine_failure);
}

void admin_server::close() {
  auto& s = *state_;
  s.closing = true;
  boost::system::error_code ignored;
  s.acceptor.close(ignored);
  for (auto* stream : s.streams) {
    stream->close();
  }
}

std::uint16_t admin_server::port() const {
  return state_->port;
}

std::size_t admin_server::connection_count() const {
  return state_->open_connections.load();
}

}  // namespace pgf::admin
