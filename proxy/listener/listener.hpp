// Accepts client connections on the configured TCP address (and Unix socket) and hands
// each to a worker thread, round-robin. Runs on the control thread's io_context.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "proxy/context.hpp"
#include "proxy/worker.hpp"

namespace pgf::listener {

class listener {
 public:
  listener(boost::asio::io_context& control, proxy_context& ctx,
           std::vector<std::unique_ptr<worker>>& workers);

  // Binds every address; throws std::runtime_error with the address and reason on failure.
  void open(const config::proxy_settings& settings);
  // Starts the accept loops.
  void start();
  // Stops accepting; sessions already accepted go on.
  void close();

  std::uint16_t port() const { return port_; }

 private:
  template <typename Acceptor>
  boost::asio::awaitable<void> accept_loop(Acceptor& acceptor, std::string label);
  worker& next_worker();

  boost::asio::io_context& control_;
  proxy_context& ctx_;
  std::vector<std::unique_ptr<worker>>& workers_;
  boost::asio::ip::tcp::acceptor tcp_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> unix_;
  std::string unix_path_;
  std::uint16_t port_ = 0;
  std::size_t next_ = 0;
};

}  // namespace pgf::listener
