// The running proxy: the control thread (signals, listener, shutdown), the worker threads
// and the state they share. main() builds one and calls run().
#pragma once

#include <memory>

#include "proxy/config/config.hpp"

namespace pgf {

class server {
 public:
  explicit server(config::config cfg);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Serves until SIGTERM or SIGINT and the shutdown that follows; returns the exit code.
  int run();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace pgf
