// The admin port: an HTTP/1.1 server (Boost.Beast, C++20 coroutines) for operators and
// monitoring. It serves the proxy's state, its metrics and the operator actions, reaching
// the proxy only through admin_actions.
//
// Threading: everything runs on the io_context given at construction (the control
// thread's). open(), start(), close() and the destructor are called there, or before it
// runs. Each connection is a coroutine; its state and the server's shared state are owned
// by shared pointers the coroutines hold, so a coroutine frame that outlives the
// admin_server (left on a stopped io_context) never touches freed memory.
//
// Limits, so that a slow or hostile admin client costs little and delays nobody: at most
// max_connections at once (further ones are closed as soon as they are accepted), headers
// up to header_limit, a body up to body_limit (larger: 413), and each request must arrive
// whole within request_timeout of the previous response (or of the connection), or the
// connection is closed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "proxy/admin/admin_actions.hpp"
#include "proxy/config/config.hpp"
#include "proxy/metrics/metrics.hpp"

namespace pgf::admin {

struct admin_server_options {
  config::listen_address listen{"127.0.0.1", 6480};
  // Bearer token every POST must present; unset allows POSTs without one (the
  // configuration allows that only on a loopback address).
  std::optional<std::string> token;
  std::size_t max_connections = 64;
  std::chrono::milliseconds request_timeout{10000};
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = 64 * 1024;

  static admin_server_options from(const config::admin_settings& settings);
};

// True when `presented` equals `expected`. Both are hashed with SHA-256 first and the
// digests compared with CRYPTO_memcmp, so the time taken reveals neither the token's
// content nor its length.
bool tokens_match(std::string_view presented, std::string_view expected);

class admin_server {
 public:
  admin_server(boost::asio::io_context& io, admin_actions& actions, metrics::metrics& metrics,
               admin_server_options options);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  // Binds the listen address and logs `admin_listening address=HOST:PORT` with the real
  // port. Throws std::runtime_error naming the address and the reason on failure.
  void open();
  // Starts accepting; connections are served on the io_context.
  void start();
  // Stops accepting and closes every open admin connection; in-flight actions finish but
  // their answers are dropped.
  void close();

  std::uint16_t port() const;
  // Open admin connections; safe to read from any thread.
  std::size_t connection_count() const;

  struct state;

 private:
  std::shared_ptr<state> state_;
};

}  // namespace pgf::admin
