// One backend's check connection: libpq in non-blocking mode, driven by Asio readiness on
// the connection's socket, running the check query and the ready_query and turning what
// happened into a probe_outcome.
//
// Contract:
// - Lives on one single-threaded io_context (the checker's); every member is called there.
//   Nothing blocks that thread: host names go through Asio's resolver and reach libpq as
//   `hostaddr`, and libpq is only called when its socket is ready.
// - The connection is persistent: a successful probe leaves it open for the next one; any
//   failed probe closes it (PQfinish) and the next probe reconnects and resolves again.
// - `timeout` covers resolve, connect and queries together, enforced by a timer of our own
//   (never libpq's connect_timeout), so a frozen server or a black hole fails in time.
// - Whatever keeps the check query from completing is a failed probe, a rejected login or
//   "too many connections" included: without the check query the role is unknown. As the
//   connection is persistent, such a rejection only matters at start or once it was lost.
// - Create it with std::make_shared: the deadline and the resolver hold weak references, so
//   a probe destroyed with a wait outstanding is safe.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <libpq-fe.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "health/probe_outcome.hpp"
#include "health/probe_target.hpp"

namespace pgf::health {

// The query every probe runs; its two columns give role and read_only.
inline constexpr const char* check_query =
    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')";

// libpq's application_name for check connections, so that operators can tell them apart
// in pg_stat_activity.
inline constexpr const char* probe_application_name = "pgfailover-health";

class probe : public std::enable_shared_from_this<probe> {
 public:
  probe(boost::asio::any_io_executor executor, probe_target target);
  ~probe();

  probe(const probe&) = delete;
  probe& operator=(const probe&) = delete;

  // One probe: (re)connects when there is no check connection, runs the checks, and
  // completes within `timeout`. nullopt when cancel() interrupted it. One run at a time.
  boost::asio::awaitable<std::optional<probe_outcome>> run(std::chrono::milliseconds timeout);

  // Interrupts a run in flight (checker stopping, backend removed); it completes with
  // nullopt and closes the connection.
  void cancel();

  // Closes the check connection, if any.
  void close();

  // A reload that keeps the address: a changed login reopens the connection on the next
  // run; a new ready_query applies from the next run.
  void set_target(probe_target target);

  // The next run opens a fresh check connection. A sign seen by a new connection must be
  // checked by one: during a smart shutdown PostgreSQL refuses new sessions ("the database
  // system is shutting down") while existing ones, the check connection too, still work.
  void reconnect_next_run() { needs_reconnect_ = true; }

  const probe_target& target() const { return target_; }
  bool is_connected() const { return conn_ != nullptr; }

 private:
  using error = std::optional<std::string>;  // a failure's reason; nullopt is success
  using result_ptr = std::unique_ptr<PGresult, void (*)(PGresult*)>;

  boost::asio::awaitable<probe_outcome> run_checks();
  boost::asio::awaitable<probe_outcome> query_server();
  boost::asio::awaitable<error> open();
  boost::asio::awaitable<error> resolve(std::vector<std::string>& addresses);
  boost::asio::awaitable<error> poll_connect();
  boost::asio::awaitable<error> execute(const char* sql, std::vector<result_ptr>& out);
  boost::asio::awaitable<error> flush();
  boost::asio::awaitable<error> wait_socket(boost::asio::posix::descriptor_base::wait_type w);

  void begin_run(std::chrono::milliseconds timeout);
  void on_deadline();
  void start_resolve();
  void on_resolved(const boost::system::error_code& ec,
                   const boost::asio::ip::tcp::resolver::results_type& results);
  void start_connect(const std::vector<std::string>& addresses);
  static void on_notice(void* arg, const PGresult* notice);
  void adopt_socket();
  void release_socket();
  void forget_dropped_socket();
  error interrupted() const;
  std::string connection_error(const std::vector<result_ptr>& results) const;

  probe_target target_;
  PGconn* conn_ = nullptr;

  // libpq owns the socket; Asio only watches it. It is released before libpq may close
  // it (each PQconnectPoll step, PQfinish) and forgotten when libpq dropped it, so Asio
  // never holds a registration for a number that libpq has closed or reused.
  boost::asio::posix::stream_descriptor socket_;

  boost::asio::steady_timer deadline_;
  std::chrono::milliseconds timeout_{0};
  std::uint64_t run_id_ = 0;  // tells the current run's deadline from a stale one
  bool is_timed_out_ = false;
  bool is_cancelled_ = false;
  const char* stage_ = "";  // what the run is doing, for the timeout reason

  // getaddrinfo cannot be interrupted, so a run that times out while resolving leaves the
  // lookup running; the next run waits for that same lookup instead of queueing another.
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer resolve_wait_;  // cancelled when the lookup completes
  bool is_resolving_ = false;
  boost::system::error_code resolve_error_;
  std::vector<std::string> resolved_addresses_;

  bool needs_reconnect_ = false;
};

}  // namespace pgf::health
