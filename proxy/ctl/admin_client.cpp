// One HTTP/1.1 exchange with the admin API for `pgfailover ctl`, over Boost.Beast.
#include "proxy/ctl/admin_client.hpp"

#include <exception>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "proxy/ctl/render.hpp"

namespace pgf::ctl {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

namespace {

// /status and /events stay far below this (the event log keeps 200 entries); the limit
// only stops a wrong address from filling memory.
constexpr std::uint64_t max_answer_bytes = 16 * 1024 * 1024;

using outcome = std::variant<reply, std::string>;

// One exchange's fixed facts, owned by talk()'s frame; the stages below borrow it.
struct call {
  admin_address address;
  std::string where;  // the address as messages show it
  request req;
  std::optional<std::string> token;
  std::chrono::milliseconds timeout;
  std::chrono::steady_clock::time_point deadline;
};

http::request<http::string_body> build_message(const call& c) {
  http::request<http::string_body> message{c.req.method, c.req.path, 11};
  message.set(http::field::host, c.where);
  message.set(http::field::user_agent, "pgfailover-ctl");
  message.set(http::field::accept, "application/json");
  if (c.token && !c.token->empty()) {
    message.set(http::field::authorization, "Bearer " + *c.token);
  }
  if (!c.req.body.empty()) {
    message.set(http::field::content_type, "application/json");
    message.body() = c.req.body;
  }
  message.keep_alive(false);
  // Sets Content-Length, also to 0 for a POST without a body, as the server requires.
  message.prepare_payload();
  return message;
}

std::string no_answer(const call& c) {
  auto text = fmt::format("no answer from {} within {}", c.where, format_timeout(c.timeout));
  if (c.req.method == http::verb::post) {
    // The server carries on with an action whose caller went away; only the answer is lost.
    text += "; the action may still complete: see `pgfailover ctl status` and `events`";
  }
  return text;
}

// Resolves the address and connects `stream`; returns the problem, if any.
net::awaitable<std::optional<std::string>> connect(beast::tcp_stream& stream, const call& c) {
  // Limitation: the name lookup has no deadline of its own (getaddrinfo cannot be
  // interrupted); a numeric address, the usual case, never waits here.
  tcp::resolver resolver(stream.get_executor());
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
      c.address.host, std::to_string(c.address.port), tcp::resolver::numeric_service, use_tuple);
  if (resolve_ec) {
    co_return fmt::format("cannot resolve {}: {}", printable(c.address.host), resolve_ec.message());
  }

  stream.expires_at(c.deadline);
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
  if (connect_ec == beast::error::timeout) {
    co_return fmt::format("cannot connect to {} within {}", c.where, format_timeout(c.timeout));
  }
  if (connect_ec) {
    co_return fmt::format("cannot connect to {}: {}", c.where, connect_ec.message());
  }
  co_return std::nullopt;
}

net::awaitable<outcome> send_and_read(beast::tcp_stream& stream, const call& c) {
  auto message = build_message(c);
  stream.expires_at(c.deadline);
  auto [write_ec, written] = co_await http::async_write(stream, message, use_tuple);
  if (write_ec == beast::error::timeout) {
    co_return no_answer(c);
  }
  if (write_ec) {
    co_return fmt::format("cannot send the request to {}: {}", c.where, write_ec.message());
  }

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_answer_bytes);
  stream.expires_at(c.deadline);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
  if (read_ec == beast::error::timeout) {
    co_return no_answer(c);
  }
  if (read_ec) {
    co_return fmt::format("no HTTP answer from {} (is it the admin address?): {}", c.where,
                          read_ec.message());
  }
  auto response = parser.release();
  co_return reply{static_cast<int>(response.result_int()), std::move(response.body())};
}

// The parameter is a copy: the coroutine frame must not depend on the caller's objects.
net::awaitable<outcome> talk(call c) {
  beast::tcp_stream stream(co_await net::this_coro::executor);
  if (auto problem = co_await connect(stream, c)) {
    co_return *problem;
  }
  auto result = co_await send_and_read(stream, c);

  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return result;
}

}  // namespace

std::variant<reply, std::string> exchange(const admin_address& address, const request& req,
                                          const std::optional<std::string>& token,
                                          std::chrono::milliseconds timeout) {
  // beast::tcp_stream applies its deadline to asynchronous operations only, so the
  // exchange is a coroutine on a private io_context that this thread runs to completion.
  net::io_context io;
  // The deadline starts before the name lookup, so that the lookup's time counts too.
  call c{.address = address,
         .where = format_admin_address(address),
         .req = req,
         .token = token,
         .timeout = timeout,
         .deadline = std::chrono::steady_clock::now() + timeout};
  outcome result = std::string("the exchange did not finish");
  net::co_spawn(io, talk(std::move(c)), [&result](std::exception_ptr failure, outcome done) {
    if (!failure) {
      result = std::move(done);
      return;
    }
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      result = fmt::format("failed: {}", e.what());
    }
  });
  io.run();
  return result;
}

}  // namespace pgf::ctl
