// One client's life in session mode: first packets, the backend login, then the relay
// of both directions until either side ends, and the one reason it ended for.
//
// Lifetime: a session is owned by the shared_ptr its coroutine holds (run() is spawned
// with shared_from_this), so it lives exactly as long as its coroutine and its timers.
// Everything runs on the worker's thread; terminate() and abort() must be called there.
//
// Cancellation: each read, the server-side write and the backend connect are bound to
// their own cancellation signal, so terminate() can stop a session at once without
// cutting a message to the client in half. Writes to the client are never cancelled
// that way; abort() closes both sockets when a client stops reading.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/frame_stream.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"
#include "proxy/context.hpp"
#include "proxy/metrics/metrics.hpp"
#include "proxy/worker.hpp"

namespace pgf::session {

namespace net = boost::asio;
using stream_socket = net::generic::stream_protocol::socket;

class session : public std::enable_shared_from_this<session> {
 public:
  session(proxy_context& ctx, worker& w, stream_socket client, std::string peer);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Spawns the session's coroutine on its worker. Call on the worker's thread.
  static void start(proxy_context& ctx, worker& w, stream_socket client, std::string peer);

  // Ends the session: the client gets an ErrorResponse (FATAL) with `sqlstate` at the next
  // message boundary, then both connections close.
  void terminate(const char* sqlstate, std::string message);
  // Closes both sockets now; for clients that stopped reading.
  void abort();
  // A new routing view. A session whose server connection belongs to an older epoch ends:
  // at once with 08006 when its backend is no longer usable, after drain_timeout with 57P01
  // when traffic was moved away from a healthy backend. Call on the worker's thread.
  void on_route_changed(const router::routing_view& view);

  std::uint64_t id() const { return id_; }
  const std::string& backend_name() const { return backend_name_; }
  std::uint64_t epoch() const { return epoch_; }
  // What the session holds on the server side: a login under way, a server connection, or
  // nothing (std::nullopt: before routing, or waiting to retry).
  std::optional<metrics::server_state> server_phase() const;

 private:
  // How one direction of the relay ended.
  enum class pump_end {
    stopped,
    client_closed,
    client_terminated,
    client_protocol_error,
    server_closed,
    server_protocol_error
  };
  struct direction {
    static constexpr std::size_t buffer_size = 16 * 1024;
    explicit direction(protocol::frame_stream f) : frames(f) {}
    std::array<std::uint8_t, buffer_size> buffer;
    std::size_t end = 0;
    protocol::frame_stream frames;
    std::uint64_t bytes = 0;
  };

  // What one attempt to reach the active backend came to. sign_of_death: the server is
  // unreachable or going away, nothing of the client's went beyond its startup packet, and
  // the attempt may be repeated where the router points next; last_failure_ says why.
  // abandoned: the router moved on while the attempt was under way; try again at once.
  enum class attempt_result { ok, failed, sign_of_death, abandoned };
  // After a failed attempt: try again once the epoch moved away from `epoch`, or at `at`.
  struct retry_point {
    std::uint64_t epoch = 0;
    std::chrono::steady_clock::time_point at;
  };

  net::awaitable<void> run();
  net::awaitable<bool> read_first_packet();
  net::awaitable<void> forward_cancel(protocol::cancel_key key);
  // Sends a CancelRequest for `target`'s server connection; false when it could not.
  net::awaitable<bool> send_cancel(const cancel_target& target);
  net::awaitable<bool> connect_backend();
  // Waits until the router names an active backend, traffic is not paused and (after a
  // failed attempt) the router moved on or the retry time came; gives up at connect_timeout
  // from `begin` (pause_timeout while paused). Returns the last view either way.
  // A wait that was held by a pause restarts `begin` when the pause ends.
  net::awaitable<router::routing_view_ptr> wait_for_route(
      std::chrono::steady_clock::time_point& begin, std::optional<retry_point> retry);
  // A session that logged in to a switchover's target during its drain: waits until the
  // switch to that backend happened (and no pause holds traffic) before the client's first
  // message goes to the server. False, with the client's error queued, when it did not
  // come within pause_timeout or the switch went elsewhere.
  net::awaitable<bool> pass_gate();
  // True while `view` still stages this session's backend for the epoch it logged in under.
  bool is_staged_in(const router::routing_view& view) const;
  // The client's error when the switch it was staged for did not happen; when a pause
  // outlasted pause_timeout.
  void fail_unswitched();
  void fail_paused(const router::routing_view& view);
  // False, with the client's error queued, when `view` gives the client nowhere to go.
  bool is_usable_route(const router::routing_view& view,
                       std::chrono::steady_clock::time_point begin, bool has_failed);
  // Connects, sends the startup packet and reads the server's first answer, all bounded by
  // one attempt's deadline.
  net::awaitable<attempt_result> attempt_login(const config::backend_config& backend,
                                               std::chrono::steady_clock::time_point begin);
  void arm_connect_timer(std::chrono::steady_clock::time_point at);
  net::awaitable<attempt_result> connect_endpoint(const config::backend_config& backend);
  net::awaitable<attempt_result> send_startup(const config::backend_config& backend);
  net::awaitable<attempt_result> read_first_answer();
  // terminate() without a message of its own: fail() was called already.
  void terminate_now();
  net::awaitable<void> relay();
  net::awaitable<pump_end> pump_client_to_server();
  net::awaitable<pump_end> pump_server_to_client();
  void on_server_message(char type, std::span<std::uint8_t> message);
  // The server side of the relay failed to read: why the session ends.
  pump_end on_server_read_error(const boost::system::error_code& ec);
  void stop_relay();
  void watch_startup();
  net::awaitable<void> finish();

  // Sends `message` (one or more whole messages) to the client, bounded in time.
  net::awaitable<bool> write_client(const protocol::byte_buffer& message);
  // Queues a FATAL error for the client and remembers the reason the session ends.
  void fail(const char* sqlstate, std::string message, std::string detail = {});

  std::string fields() const;
  void set_phase(metrics::client_state phase);

  proxy_context& ctx_;
  worker& worker_;
  std::list<session*>::iterator registry_it_;
  std::uint64_t id_;
  std::string peer_;
  std::chrono::steady_clock::time_point started_;
  std::shared_ptr<const config::config> cfg_;
  metrics::worker_counters& counters_;  // this worker's; written by this thread only
  metrics::client_state phase_ = metrics::client_state::login;

  stream_socket client_;
  stream_socket server_;
  net::steady_timer startup_timer_;
  net::steady_timer connect_timer_;
  net::steady_timer drain_timer_;  // a planned switch: end the session after drain_timeout
  net::steady_timer gate_timer_;   // pass_gate()'s pause_timeout
  net::cancellation_signal client_read_cancel_;
  net::cancellation_signal server_read_cancel_;
  net::cancellation_signal server_write_cancel_;

  protocol::startup_message startup_;
  protocol::cancel_key client_key_;
  bool key_registered_ = false;
  std::string backend_name_;
  std::size_t backend_index_ = 0;  // in cfg_->backends
  std::string last_failure_;       // why the last attempt to reach the server failed
  bool is_draining_ = false;
  bool is_attempting_ = false;         // attempt_login() is under way
  bool is_attempt_abandoned_ = false;  // on_route_changed() cut it short
  std::string backend_address_;
  std::uint64_t epoch_ = 0;
  std::uint64_t gate_epoch_ = 0;  // non-zero: staged for that epoch, first query held
  std::string server_host_;       // numeric address or socket path: where cancels go
  std::uint16_t server_port_ = 0;

  bool stopping_ = false;    // terminate() or a fatal error: stop at the next step
  bool relay_stop_ = false;  // one direction ended: the other stops too
  bool login_complete_ = false;
  bool connected_ = false;
  bool connect_timed_out_ = false;
  bool last_server_error_fatal_ = false;
  char transaction_status_ = 'I';
  // Query, Sync and FunctionCall messages sent that have no ReadyForQuery back yet: a
  // request is running (or queued) on the server while this is above zero.
  std::uint32_t requests_pending_ = 0;
  std::optional<cancel_target> server_cancel_;  // the server connection's own key
  std::unique_ptr<direction> up_;               // client -> server
  std::unique_ptr<direction> down_;             // server -> client

  // The FATAL error owed to the client, if any, and the reason logged at the end.
  std::optional<protocol::byte_buffer> pending_error_;
  std::string end_reason_;
};

}  // namespace pgf::session
