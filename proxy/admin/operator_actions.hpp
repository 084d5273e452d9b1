// The running proxy as the admin API sees it: what GET /status, /events and /metrics show,
// and the operator actions, including the drain that makes a switchover planned.
//
// A planned move of the active backend (POST /switchover, or POST /backends/NAME/disable
// of the active one) goes: hold new work, wait up to drain_timeout until no session holds
// or opens a server connection to the backend being left, switch, release. Sessions still
// on the old backend then end at once with 57P01: they had their drain_timeout. `force`
// skips the wait, not the switch's checks.
//
// What "hold" means in session mode: a new connection logs in to the target at once
// (passthrough authentication needs a server) and its first query waits for the switch.
// Holding the connect itself would let a client that connects synchronously (pgbench -C,
// one thread for several connections) stall the very sessions the drain waits for. In
// transaction mode the hold will sit at the start of each client's next transaction.
//
// Threading: everything runs on the control thread (admin_actions' contract); the worker
// sessions are counted by posting to each worker in turn.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "health/checker.hpp"
#include "proxy/admin/admin_actions.hpp"
#include "proxy/config/config.hpp"
#include "proxy/metrics/metrics.hpp"
#include "proxy/router/router.hpp"
#include "proxy/worker.hpp"

namespace pgf::admin {

struct operator_parts {
  boost::asio::io_context& control;
  router::router& router;
  health::checker& checker;
  metrics::metrics& metrics;
  const std::vector<std::unique_ptr<worker>>& workers;
  std::string config_path;
  // Throws std::runtime_error when this build cannot serve `cfg` (server.cpp's rules).
  std::function<void(const config::config&)> check_supported;
  // True once shutdown began: /readyz then answers 503 so that load balancers move away.
  std::function<bool()> is_shutting_down;
};

// What a reload found; also the SIGHUP path's log line.
struct reload_outcome {
  bool is_applied = false;
  std::vector<std::string> issues;            // why the file was refused
  std::vector<std::string> restart_required;  // keys that changed but act only after a restart
  std::vector<std::string> warnings;          // the new file's warnings
};

class operator_actions final : public admin_actions {
 public:
  explicit operator_actions(operator_parts parts);

  boost::asio::awaitable<boost::json::value> status() override;
  boost::json::value events() override;
  bool ready() override;
  boost::asio::awaitable<void> refresh_metrics() override;
  boost::asio::awaitable<action_result> switchover(std::string to, bool force, std::string reason,
                                                   std::string who) override;
  boost::asio::awaitable<action_result> disable(std::string name, bool force, std::string reason,
                                                std::string who) override;
  boost::asio::awaitable<action_result> enable(std::string name, std::string reason,
                                               std::string who) override;
  boost::asio::awaitable<action_result> pause(std::string reason, std::string who) override;
  boost::asio::awaitable<action_result> resume(std::string reason, std::string who) override;
  boost::asio::awaitable<action_result> reload(std::string reason, std::string who) override;

  // The reload itself, for SIGHUP as well as POST /reload.
  boost::asio::awaitable<reload_outcome> reload_file(std::string who, std::string reason = {});

  // When the planned move under way was asked for; the failover duration of the switch it
  // makes starts there.
  std::optional<std::chrono::steady_clock::time_point> planned_since() const {
    return planned_since_;
  }

  // Every worker's sessions, counted.
  boost::asio::awaitable<server_census> census();

 private:
  struct drain_result {
    std::uint32_t left = 0;  // sessions still on the old backend when the wait ended
    std::chrono::milliseconds took{0};
  };
  // Holds new work and waits until no session is attached to a backend `is_old` accepts,
  // or drain_timeout passed. New sessions log in to `target` meanwhile (when set) and wait
  // before their first query. The hold stays until release_hold().
  boost::asio::awaitable<drain_result> hold_and_drain(std::optional<std::string> target,
                                                      std::function<bool(std::string_view)> is_old,
                                                      std::string why);
  // Sessions holding or opening a server connection to a backend `is_old` accepts.
  boost::asio::awaitable<std::uint32_t> count_attached(
      const std::function<bool(std::string_view)>& is_old);
  boost::asio::awaitable<void> release_hold();
  // Returns once every worker has handled what was published before the call.
  boost::asio::awaitable<void> settle_workers();
  // A planned move: refuses a second one while one runs.
  std::optional<action_result> refuse_if_moving(const std::string& action,
                                                const std::string& who) const;

  operator_parts parts_;
  std::optional<std::string> moving_;  // what the planned move under way is, in words
  std::optional<std::chrono::steady_clock::time_point> planned_since_;
};

}  // namespace pgf::admin
