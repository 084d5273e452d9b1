// Listener: bind, accept, hand off to a worker.
#include "proxy/listener/listener.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/session/session.hpp"

namespace pgf::listener {

namespace net = boost::asio;
using tcp = net::ip::tcp;

listener::listener(net::io_context& control, proxy_context& ctx,
                   std::vector<std::unique_ptr<worker>>& workers)
    : control_(control), ctx_(ctx), workers_(workers), tcp_(control) {}

void listener::open(const config::proxy_settings& settings) {
  auto host = settings.listen.host == "*" ? std::string("0.0.0.0") : settings.listen.host;
  tcp::resolver resolver(control_);
  boost::system::error_code ec;
  auto results =
      resolver.resolve(host, std::to_string(settings.listen.port), tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(fmt::format("cannot resolve listen address {}: {}", host,
                                         ec ? ec.message() : "no address"));
  }
  auto endpoint = results.begin()->endpoint();
  tcp_.open(endpoint.protocol());
  tcp_.set_option(tcp::acceptor::reuse_address(true));
  tcp_.bind(endpoint, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}:{}: {}", host, settings.listen.port, ec.message()));
  }
  tcp_.listen(net::socket_base::max_listen_connections);
  port_ = tcp_.local_endpoint().port();
  spdlog::info("listening proto=tcp address={}:{}", tcp_.local_endpoint().address().to_string(),
               port_);

  if (settings.unix_socket_dir) {
    unix_path_ = fmt::format("{}/.s.PGSQL.{}", *settings.unix_socket_dir, port_);
    ::unlink(unix_path_.c_str());  // a stale socket from a previous run
    unix_ = std::make_unique<net::local::stream_protocol::acceptor>(control_);
    unix_->open();
    unix_->bind(net::local::stream_protocol::endpoint(unix_path_), ec);
    if (ec) {
      throw std::runtime_error(fmt::format("cannot listen on {}: {}", unix_path_, ec.message()));
    }
    unix_->listen(net::socket_base::max_listen_connections);
    spdlog::info("listening proto=unix address={}", unix_path_);
  }
}

void listener::start() {
  net::co_spawn(control_, accept_loop(tcp_, "tcp"), net::detached);
  if (unix_) {
    net::co_spawn(control_, accept_loop(*unix_, "unix"), net::detached);
  }
}

void listener::close() {
  boost::system::error_code ec;
  tcp_.close(ec);
  if (unix_) {
    unix_->close(ec);
    ::unlink(unix_path_.c_str());
  }
}

worker& listener::next_worker() {
  auto& w = *workers_[next_];
  next_ = (next_ + 1) % workers_.size();
  return w;
}

template <typename Acceptor>
net::awaitable<void> listener::accept_loop(Acceptor& acceptor, std::string label) {
  net::steady_timer backoff(control_);
  while (acceptor.is_open()) {
    auto& w = next_worker();
    auto [ec, socket] = co_await acceptor.async_accept(w.io(), net::as_tuple(net::use_awaitable));
    if (ec == net::error::operation_aborted || !acceptor.is_open()) {
      break;
    }
    if (ec) {
      // Out of file descriptors, typically: pause instead of spinning on the error.
      spdlog::error("accept_failed proto={} error={:?}", label, ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }

    std::string peer = "unix";
    boost::system::error_code opt_ec;
    if constexpr (std::is_same_v<Acceptor, tcp::acceptor>) {
      auto remote = socket.remote_endpoint(opt_ec);
      peer = opt_ec ? "unknown" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
      socket.set_option(tcp::no_delay(true), opt_ec);
      socket.set_option(net::socket_base::keep_alive(true), opt_ec);
    }
    session::stream_socket generic(std::move(socket));
    net::post(w.io(), [this, &w, s = std::move(generic), p = std::move(peer)]() mutable {
      session::session::start(ctx_, w, std::move(s), std::move(p));
    });
  }
}

}  // namespace pgf::listener
