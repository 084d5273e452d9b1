// Session mode: one client, one server connection, relayed until either side ends.
//
// GCC 12 and coroutines: every co_await here is a statement of its own, and its result is
// taken through a structured binding (`auto [ec, n] = co_await ...`). `std::tie(ec, n) =
// co_await ...` inside a branch, and co_await inside && or ||, were miscompiled: the frame
// was resumed at a wild address once the read completed.
#include "proxy/session/session.hpp"

#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "protocol/constants.hpp"

namespace pgf::session {

namespace {

using namespace boost::asio::experimental::awaitable_operators;
namespace proto = protocol;
using tcp = net::ip::tcp;

constexpr auto as_value = net::as_tuple(net::use_awaitable);
// A client that does not read its FATAL error within this time is simply closed.
constexpr auto error_write_timeout = std::chrono::seconds(5);
// At most this many SSLRequest/GSSENCRequest packets before the StartupMessage.
constexpr int max_negotiation_packets = 2;
// Bounds on one attempt to reach a server, and on the pause before the next attempt.
constexpr std::chrono::milliseconds min_attempt_timeout{1000};
constexpr std::chrono::milliseconds min_retry_delay{50};

auto bound(net::cancellation_signal& signal) {
  return net::bind_cancellation_slot(signal.slot(), as_value);
}

std::string describe_error(const boost::system::error_code& ec) {
  if (ec == net::error::connection_refused) {
    return "connection refused";
  }
  if (ec == net::error::connection_reset) {
    return "connection reset";
  }
  if (ec == net::error::eof) {
    return "server closed the connection";
  }
  return ec.message();
}

proto::byte_buffer fatal(const char* sqlstate, std::string_view message,
                         std::string_view detail = {}) {
  proto::byte_buffer out;
  proto::append_error_response(out, {.severity = "FATAL",
                                     .sqlstate = sqlstate,
                                     .message = message,
                                     .detail = detail,
                                     .hint = {}});
  return out;
}

}  // namespace

session::session(proxy_context& ctx, worker& w, stream_socket client, std::string peer)
    : ctx_(ctx),
      worker_(w),
      id_(ctx.next_session_id.fetch_add(1, std::memory_order_relaxed)),
      peer_(std::move(peer)),
      started_(std::chrono::steady_clock::now()),
      cfg_(ctx.router.view()->cfg),
      counters_(ctx.metrics.worker(w.index())),
      client_(std::move(client)),
      server_(client_.get_executor()),
      startup_timer_(client_.get_executor()),
      connect_timer_(client_.get_executor()),
      drain_timer_(client_.get_executor()),
      gate_timer_(client_.get_executor()) {
  ctx_.client_count.fetch_add(1, std::memory_order_relaxed);
  registry_it_ = worker_.add(this);
  counters_.count_client_accepted();
  counters_.enter(phase_);
}

session::~session() {
  worker_.remove(registry_it_);
  if (key_registered_) {
    ctx_.cancels.detach(client_key_);
  }
  ctx_.client_count.fetch_sub(1, std::memory_order_relaxed);
  counters_.leave(phase_);
}

void session::set_phase(metrics::client_state phase) {
  if (phase != phase_) {
    counters_.move(phase_, phase);
    phase_ = phase;
  }
}

std::optional<metrics::server_state> session::server_phase() const {
  if (connected_) {
    return metrics::server_state::active;
  }
  if (is_attempting_) {
    return metrics::server_state::login;
  }
  return std::nullopt;
}

void session::start(proxy_context& ctx, worker& w, stream_socket client, std::string peer) {
  auto s = std::make_shared<session>(ctx, w, std::move(client), std::move(peer));
  net::co_spawn(
      w.io(), [s]() { return s->run(); },
      [s](std::exception_ptr e) {
        if (!e) {
          return;
        }
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("session_error {} error={:?}", s->fields(), ex.what());
        }
      });
}

std::string session::fields() const {
  auto out = fmt::format("session=c{} peer={}", id_, peer_);
  if (const auto* user = startup_.find("user")) {
    out += fmt::format(" db={} user={}", startup_.database(), *user);
  }
  if (!backend_name_.empty()) {
    out += fmt::format(" backend={}", backend_name_);
  }
  return out;
}

net::awaitable<void> session::run() {
  watch_startup();
  // One co_await per statement: GCC 12 miscompiles co_await inside && and ||.
  bool started = co_await read_first_packet();
  if (started) {
    started = co_await connect_backend();
  }
  if (started) {
    co_await relay();
  }
  co_await finish();
}

// ---- first packets ----

net::awaitable<bool> session::read_first_packet() {
  for (int negotiations = 0;; ++negotiations) {
    std::array<std::uint8_t, 4> prefix;
    auto [ec, n] =
        co_await net::async_read(client_, net::buffer(prefix), bound(client_read_cancel_));
    if (ec) {
      end_reason_ = stopping_ ? end_reason_ : "client closed before startup";
      co_return false;
    }

    std::uint32_t length = 0;
    std::string reason;
    if (proto::decode_first_packet_length(prefix, length, reason) !=
        proto::decode_status::complete) {
      fail(proto::sqlstate::protocol_violation, "invalid startup packet: " + reason);
      co_return false;
    }
    std::vector<std::uint8_t> packet(length);
    std::memcpy(packet.data(), prefix.data(), prefix.size());
    auto [ec2, n2] = co_await net::async_read(client_, net::buffer(packet.data() + 4, length - 4),
                                              bound(client_read_cancel_));
    if (ec2) {
      end_reason_ = stopping_ ? end_reason_ : "client closed during startup";
      co_return false;
    }

    proto::first_packet first;
    if (proto::parse_first_packet(packet, first, reason) != proto::decode_status::complete) {
      fail(proto::sqlstate::protocol_violation, "invalid startup packet: " + reason);
      co_return false;
    }

    if (first.kind == proto::packet_kind::cancel_request) {
      co_await forward_cancel(first.cancel);
      co_return false;
    }
    if (first.kind != proto::packet_kind::startup) {
      if (negotiations >= max_negotiation_packets) {
        fail(proto::sqlstate::protocol_violation, "too many encryption requests");
        co_return false;
      }
      // Neither TLS nor GSS encryption is offered: 'N' tells the client to go on in
      // plaintext on the same socket (or give up, if it requires encryption).
      static const std::uint8_t refuse = 'N';
      auto [wec, wn] = co_await net::async_write(client_, net::buffer(&refuse, 1), as_value);
      if (wec) {
        end_reason_ = "client closed during startup";
        co_return false;
      }
      continue;
    }

    startup_ = std::move(first.startup);
    co_return true;
  }
}

net::awaitable<void> session::forward_cancel(proto::cancel_key key) {
  end_reason_ = "cancel request";
  auto target = ctx_.cancels.find(key);
  if (!target) {
    // PostgreSQL answers nothing to a cancel it cannot match; neither does the proxy.
    spdlog::debug("cancel_unmatched session=c{} peer={}", id_, peer_);
    co_return;
  }
  bool is_sent = co_await send_cancel(*target);
  spdlog::debug("cancel_forwarded session=c{} peer={} server={} ok={}", id_, peer_, target->host,
                is_sent);
}

net::awaitable<bool> session::send_cancel(const cancel_target& target) {
  proto::byte_buffer packet;
  proto::append_cancel_request(packet, target.backend_key);
  stream_socket sock(client_.get_executor());
  boost::system::error_code ec;
  if (target.host.starts_with('/')) {
    auto [connect_ec] =
        co_await sock.async_connect(net::local::stream_protocol::endpoint(target.host), as_value);
    ec = connect_ec;
  } else {
    auto address = net::ip::make_address(target.host, ec);
    if (ec) {
      co_return false;
    }
    auto [connect_ec] = co_await sock.async_connect(tcp::endpoint(address, target.port), as_value);
    ec = connect_ec;
  }
  if (ec) {
    co_return false;
  }
  auto [wec, n] = co_await net::async_write(sock, net::buffer(packet), as_value);
  co_return !wec;
}

void session::watch_startup() {
  startup_timer_.expires_after(cfg_->proxy.startup_timeout);
  startup_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->login_complete_ || self->stopping_) {
      return;
    }
    auto ms = self->cfg_->proxy.startup_timeout.count();
    self->terminate(proto::sqlstate::protocol_violation,
                    fmt::format("startup did not complete within startup_timeout ({}ms)", ms));
  });
}

// ---- backend ----

net::awaitable<bool> session::connect_backend() {
  const auto& cfg = *cfg_;
  if (ctx_.client_count.load(std::memory_order_relaxed) > cfg.proxy.max_client_connections) {
    fail(proto::sqlstate::too_many_connections,
         fmt::format("too many client connections (max_client_connections = {})",
                     cfg.proxy.max_client_connections));
    co_return false;
  }

  auto negotiation = proto::negotiate_version(startup_);
  if (negotiation.send_negotiate) {
    proto::byte_buffer out;
    proto::append_negotiate_protocol_version(out, negotiation.newest_minor,
                                             negotiation.unsupported_options);
    bool written = co_await write_client(out);
    if (!written) {
      co_return false;
    }
  }

  down_ = std::make_unique<direction>(proto::frame_stream(
      {'Z', 'K', 'E'}, direction::buffer_size, std::numeric_limits<std::uint32_t>::max()));
  auto begin = std::chrono::steady_clock::now();
  std::optional<retry_point> retry;
  // Waiting for a route is bounded by connect_timeout and pause_timeout, not by the
  // client's startup_timeout; the login exchange gets a startup_timeout of its own below.
  startup_timer_.cancel();
  for (;;) {
    auto view = co_await wait_for_route(begin, retry);
    if (stopping_ || !is_usable_route(*view, begin, retry.has_value())) {
      co_return false;
    }
    // The active backend, or during a switchover's drain the backend it goes to: the
    // session logs in there at once and waits before its first query (pass_gate()).
    bool is_staged = !view->active || view->paused;
    backend_index_ = is_staged ? *view->staged : *view->active;
    const auto& backend = view->cfg->backends[backend_index_];
    backend_name_ = backend.name;
    epoch_ = is_staged ? view->staged_epoch : view->epoch;
    gate_epoch_ = is_staged ? epoch_ : 0;
    cfg_ = view->cfg;
    watch_startup();

    auto result = co_await attempt_login(backend, begin);
    if (result == attempt_result::ok) {
      spdlog::debug("backend_connected {} address={} epoch={}", fields(), backend_address_, epoch_);
      co_return true;
    }
    if (result == attempt_result::failed || stopping_) {
      co_return false;
    }

    // Nothing of the client's beyond its startup packet reached the server, so trying
    // again is safe; but only where the router points, once it had a chance to decide.
    spdlog::debug("backend_attempt_failed {} reason={:?} epoch={}", fields(), last_failure_,
                  epoch_);
    if (result == attempt_result::sign_of_death && ctx_.report_sign_of_death) {
      ctx_.report_sign_of_death(backend_index_);
    }
    auto delay = std::max(cfg_->health.interval, min_retry_delay);
    retry = retry_point{epoch_, std::chrono::steady_clock::now() + delay};
  }
}

bool session::is_usable_route(const router::routing_view& view,
                              std::chrono::steady_clock::time_point begin, bool has_failed) {
  if (view.paused && !view.staged) {
    fail_paused(view);
    return false;
  }
  if (view.active_backend() == nullptr || view.deciding) {
    fail(proto::sqlstate::cannot_connect_now,
         fmt::format("no backend is available (waited connect_timeout, {}ms)",
                     cfg_->proxy.connect_timeout.count()),
         view.unavailable_detail());
    return false;
  }
  bool is_out_of_time = std::chrono::steady_clock::now() >= begin + cfg_->proxy.connect_timeout;
  if (has_failed && is_out_of_time) {
    fail(proto::sqlstate::connection_failure,
         fmt::format("cannot connect to backend {}: {}", backend_name_, last_failure_));
    return false;
  }
  return true;
}

net::awaitable<router::routing_view_ptr> session::wait_for_route(
    std::chrono::steady_clock::time_point& begin, std::optional<retry_point> retry) {
  auto view = ctx_.router.view();
  net::steady_timer deadline(client_.get_executor());
  bool was_held = false;
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    bool is_routable =
        !view->deciding && ((view->active && !view->paused) || (view->paused && view->staged));
    if (is_routable && was_held) {
      // The pause is over: a fresh connect_timeout for reaching the backend.
      begin = now;
    }
    // After a failed attempt: a new decision, or the retry delay, whichever comes first.
    bool is_new_try = !retry || view->epoch != retry->epoch || now >= retry->at;
    if (is_routable && is_new_try) {
      break;
    }
    // A pause holds clients up to pause_timeout; a missing backend up to connect_timeout.
    auto limit = view->paused ? view->cfg->failover.pause_timeout : cfg_->proxy.connect_timeout;
    if (now >= begin + limit) {
      break;
    }
    auto until = begin + limit;
    if (is_routable && retry) {
      until = std::min(until, retry->at);
    }
    deadline.expires_at(until);
    was_held = was_held || view->paused;
    set_phase(metrics::client_state::waiting);
    co_await (worker_.route_changed().async_wait(as_value) || deadline.async_wait(as_value));
    set_phase(metrics::client_state::login);
    view = ctx_.router.view();
  }
  co_return view;
}

net::awaitable<session::attempt_result> session::attempt_login(
    const config::backend_config& backend, std::chrono::steady_clock::time_point begin) {
  // One attempt may not eat the whole connect_timeout: a black-holed or frozen server is
  // given about as long as a health probe would give it, so the retry can follow the
  // router's decision instead of waiting on a server that will never answer.
  auto attempt_limit =
      std::clamp(2 * cfg_->health.timeout, min_attempt_timeout, cfg_->proxy.connect_timeout);
  auto attempt_end = std::min(std::chrono::steady_clock::now() + attempt_limit,
                              begin + cfg_->proxy.connect_timeout);
  arm_connect_timer(attempt_end);
  is_attempting_ = true;
  is_attempt_abandoned_ = false;

  auto result = co_await connect_endpoint(backend);
  if (result == attempt_result::ok) {
    result = co_await send_startup(backend);
  }
  if (result == attempt_result::ok) {
    result = co_await read_first_answer();
  }
  is_attempting_ = false;
  if (is_attempt_abandoned_ && result != attempt_result::failed) {
    result = attempt_result::abandoned;
  }
  connected_ = result == attempt_result::ok;
  connect_timer_.cancel();
  if (result == attempt_result::sign_of_death && connect_timed_out_) {
    last_failure_ = fmt::format("timeout after {}ms", attempt_limit.count());
  }
  if (result == attempt_result::abandoned) {
    last_failure_ = "the router moved to another backend during the attempt";
  }
  if (result == attempt_result::sign_of_death || result == attempt_result::abandoned) {
    boost::system::error_code ec;
    server_.close(ec);
  }
  co_return result;
}

void session::arm_connect_timer(std::chrono::steady_clock::time_point at) {
  connected_ = false;
  connect_timed_out_ = false;
  connect_timer_.expires_at(at);
  connect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec && !self->connected_) {
      self->connect_timed_out_ = true;
      self->server_read_cancel_.emit(net::cancellation_type::terminal);
      self->server_write_cancel_.emit(net::cancellation_type::terminal);
    }
  });
}

net::awaitable<session::attempt_result> session::connect_endpoint(
    const config::backend_config& backend) {
  const auto& endpoint = backend.endpoint;
  boost::system::error_code ec = net::error::host_not_found;
  boost::system::error_code close_ec;
  server_.close(close_ec);
  if (endpoint.host.starts_with('/')) {
    auto path = fmt::format("{}/.s.PGSQL.{}", endpoint.host, endpoint.port);
    auto [connect_ec] = co_await server_.async_connect(net::local::stream_protocol::endpoint(path),
                                                       bound(server_read_cancel_));
    ec = connect_ec;
    server_host_ = path;
    backend_address_ = path;
  } else {
    // Resolved for every connection, so that a moved endpoint (an RDS failover) is followed.
    tcp::resolver resolver(client_.get_executor());
    auto [rec, results] =
        co_await resolver.async_resolve(endpoint.host, std::to_string(endpoint.port), as_value);
    if (rec) {
      ec = rec;
    }
    for (const auto& entry : results) {
      if (connect_timed_out_ || stopping_) {
        break;
      }
      server_.close(close_ec);
      auto [connect_ec] =
          co_await server_.async_connect(entry.endpoint(), bound(server_read_cancel_));
      ec = connect_ec;
      if (!ec) {
        server_host_ = entry.endpoint().address().to_string();
        server_port_ = entry.endpoint().port();
        backend_address_ = fmt::format("{}:{}", server_host_, server_port_);
        server_.set_option(tcp::no_delay(true), close_ec);
        break;
      }
    }
  }

  if (stopping_) {
    co_return attempt_result::failed;
  }
  if (ec || connect_timed_out_) {
    last_failure_ = describe_error(ec);
    co_return attempt_result::sign_of_death;
  }
  co_return attempt_result::ok;
}

net::awaitable<session::attempt_result> session::send_startup(
    const config::backend_config& backend) {
  std::vector<proto::startup_parameter> params = startup_.parameters;
  if (!backend.databases.empty()) {
    for (auto& p : params) {
      auto it = p.name == "database" ? backend.databases.find(p.value) : backend.databases.end();
      if (it != backend.databases.end()) {
        p.value = it->second;
      }
    }
  }
  proto::byte_buffer packet;
  proto::append_startup_message(packet, params);
  auto [ec, n] =
      co_await net::async_write(server_, net::buffer(packet), bound(server_write_cancel_));
  if (stopping_) {
    co_return attempt_result::failed;
  }
  if (ec) {
    last_failure_ = "closed the connection during login: " + describe_error(ec);
    co_return attempt_result::sign_of_death;
  }
  co_return attempt_result::ok;
}

// The server's first answer to the startup packet decides whether this server can take
// the client: an authentication request or any error of the client's own (a wrong
// password, 53300, 3D000) goes to the client as it is; no answer at all, or 57P03 ("the
// database system is shutting down", "... is starting up", "... is not yet accepting
// connections") is a sign that the server is going away. The bytes stay in the buffer for
// the relay, which treats them like any others.
net::awaitable<session::attempt_result> session::read_first_answer() {
  auto& d = *down_;
  d.end = 0;
  for (;;) {
    if (d.end >= proto::header_size) {
      char type = 0;
      std::uint32_t length = 0;
      std::string_view reason;
      bool is_valid =
          proto::decode_header({d.buffer.data(), d.end}, std::numeric_limits<std::uint32_t>::max(),
                               type, length, reason);
      const std::size_t size = std::size_t{length} + 1;
      if (!is_valid || type != 'E' || size > d.buffer.size()) {
        co_return attempt_result::ok;
      }
      if (d.end >= size) {
        proto::error_fields fields;
        auto body = proto::bytes_view(d.buffer.data() + proto::header_size, size - 5);
        bool is_parsed = proto::parse_error_fields(body, fields);
        if (is_parsed && fields.sqlstate == proto::sqlstate::cannot_connect_now) {
          last_failure_ = std::string(fields.message);
          co_return attempt_result::sign_of_death;
        }
        co_return attempt_result::ok;
      }
    }

    auto [ec, n] = co_await server_.async_read_some(
        net::buffer(d.buffer.data() + d.end, d.buffer.size() - d.end), bound(server_read_cancel_));
    if (stopping_) {
      co_return attempt_result::failed;
    }
    if (ec) {
      last_failure_ = "closed the connection during login: " + describe_error(ec);
      co_return attempt_result::sign_of_death;
    }
    d.end += n;
  }
}

// ---- routing changes ----

void session::on_route_changed(const router::routing_view& view) {
  if (backend_name_.empty() || view.epoch == epoch_ || stopping_) {
    return;
  }
  if (epoch_ > view.epoch) {
    // Logged in (or logging in) ahead of a switchover: fine while the drain still stages
    // this backend for that epoch. Once it does not, the switch will not happen: a login
    // under way goes where the router points (below), a finished one ends.
    if (is_staged_in(view)) {
      return;
    }
    if (connected_) {
      fail_unswitched();
      terminate_now();
      return;
    }
  }
  if (!connected_) {
    // An attempt still under way (a frozen server has not answered yet) is abandoned: none
    // of the client's bytes beyond its startup packet went anywhere, so it goes where the
    // router points now instead of waiting out the attempt's deadline.
    if (is_attempting_) {
      is_attempt_abandoned_ = true;
      server_read_cancel_.emit(net::cancellation_type::terminal);
      server_write_cancel_.emit(net::cancellation_type::terminal);
    }
    return;
  }
  // The server connection was opened under an older epoch: it must not outlive the switch.
  const router::backend_route_state* mine = nullptr;
  for (const auto& b : view.backends) {
    if (b.name == backend_name_) {
      mine = &b;
    }
  }
  bool is_lost = mine == nullptr || router::is_unfit(mine->status);
  if (is_lost) {
    auto why = mine == nullptr ? std::string("removed from the configuration") : mine->why_not;
    bool is_outcome_unknown = transaction_status_ != 'I' || requests_pending_ > 0;
    fail(proto::sqlstate::connection_failure,
         fmt::format("backend {} is no longer usable ({}); closing this connection", backend_name_,
                     why),
         is_outcome_unknown ? "The outcome of the transaction in progress is unknown." : "");
    terminate_now();
    return;
  }
  // A planned move (a switchover, a failback, an operator disabling it): the backend is
  // still healthy, so the session gets drain_timeout to finish before it is closed; none
  // more when the switch itself came after a drain (or was forced to skip it).
  auto to = view.active_backend() ? view.active_backend()->name : std::string("none");
  if (view.drained) {
    // At once, not on a timer: the admin API answers a switchover only after every worker
    // has seen it, and by then no query of this session may reach the old backend.
    terminate(proto::sqlstate::admin_shutdown,
              fmt::format("terminating connection: traffic moved from backend {} to {}",
                          backend_name_, to));
    return;
  }
  if (!is_draining_) {
    is_draining_ = true;
    drain_timer_.expires_after(view.cfg->failover.drain_timeout);
    drain_timer_.async_wait([self = shared_from_this(), to](boost::system::error_code ec) {
      if (ec) {
        return;
      }
      self->terminate(proto::sqlstate::admin_shutdown,
                      fmt::format("terminating connection: traffic moved from backend {} to {}",
                                  self->backend_name_, to));
    });
  }
}

net::awaitable<bool> session::pass_gate() {
  const auto begin = std::chrono::steady_clock::now();
  set_phase(metrics::client_state::waiting);
  // relay_stop_: the server side ended meanwhile; stop_relay() cancels gate_timer_.
  while (!stopping_ && !relay_stop_) {
    auto view = ctx_.router.view();
    const auto* active = view->active_backend();
    bool is_switched = view->epoch == epoch_ && active != nullptr && active->name == backend_name_;
    if (is_switched && !view->paused) {
      gate_epoch_ = 0;
      set_phase(metrics::client_state::active);
      ctx_.note_served(epoch_);
      co_return true;
    }
    // The switch went elsewhere (the epoch moved to another backend, or the drain ended
    // without it); a refused switch is usually caught by on_route_changed() first.
    if (!is_switched && !is_staged_in(*view)) {
      fail_unswitched();
      terminate_now();
      co_return false;
    }
    auto limit = view->cfg->failover.pause_timeout;
    if (std::chrono::steady_clock::now() >= begin + limit) {
      fail_paused(*view);
      terminate_now();
      co_return false;
    }
    gate_timer_.expires_at(begin + limit);
    co_await (worker_.route_changed().async_wait(as_value) || gate_timer_.async_wait(as_value));
  }
  co_return false;
}

bool session::is_staged_in(const router::routing_view& view) const {
  return view.staged && view.staged_epoch == epoch_ &&
         view.cfg->backends[*view.staged].name == backend_name_;
}

void session::fail_unswitched() {
  fail(proto::sqlstate::cannot_connect_now,
       fmt::format("the switch to backend {} this connection waited for did not take place; "
                   "reconnect",
                   backend_name_));
}

void session::fail_paused(const router::routing_view& view) {
  fail(proto::sqlstate::cannot_connect_now,
       fmt::format("{}; not resumed within pause_timeout ({}ms)",
                   view.pause_reason.empty() ? "traffic is paused" : view.pause_reason,
                   view.cfg->failover.pause_timeout.count()));
}

// ---- relay ----

net::awaitable<void> session::relay() {
  auto max = cfg_->proxy.max_message_size;
  up_ = std::make_unique<direction>(proto::frame_stream({'X'}, direction::buffer_size, max));
  client_key_ = ctx_.cancels.issue();

  auto [up_end, down_end] = co_await (pump_client_to_server() && pump_server_to_client());

  if (stopping_) {
    co_return;  // terminate() already queued the error and the reason
  }
  if (up_end == pump_end::client_terminated || up_end == pump_end::client_closed) {
    end_reason_ = up_end == pump_end::client_terminated ? "client terminated" : "client closed";
    co_return;
  }
  if (down_end == pump_end::client_closed) {
    end_reason_ = "client closed";
  }
}

void session::stop_relay() {
  relay_stop_ = true;
  gate_timer_.cancel();
  client_read_cancel_.emit(net::cancellation_type::terminal);
  server_read_cancel_.emit(net::cancellation_type::terminal);
  server_write_cancel_.emit(net::cancellation_type::terminal);
}

net::awaitable<session::pump_end> session::pump_client_to_server() {
  auto& d = *up_;
  for (;;) {
    if (relay_stop_) {
      co_return pump_end::stopped;
    }
    auto [ec, n] = co_await client_.async_read_some(
        net::buffer(d.buffer.data() + d.end, d.buffer.size() - d.end), bound(client_read_cancel_));
    if (ec) {
      if (relay_stop_ && ec == net::error::operation_aborted) {
        co_return pump_end::stopped;
      }
      stop_relay();
      co_return pump_end::client_closed;
    }
    if (relay_stop_) {
      // terminate() came while this read's completion was already queued: what the
      // client sent now goes nowhere.
      co_return pump_end::stopped;
    }
    d.end += n;
    // Logged in ahead of a switchover: the first query waits for the switch. A Terminate
    // goes through at once (messages start at the buffer's start once logged in).
    if (gate_epoch_ != 0 && login_complete_ && d.buffer[0] != 'X') {
      bool is_open = co_await pass_gate();
      if (!is_open) {
        stop_relay();
        co_return pump_end::stopped;
      }
    }

    std::size_t pos = 0;
    bool terminated = false;
    for (;;) {
      auto f = d.frames.next({d.buffer.data() + pos, d.end - pos});
      if (f.kind == proto::frame_kind::need_more) {
        break;
      }
      if (f.kind == proto::frame_kind::malformed) {
        // Bytes before the bad header are whole messages: let them through first.
        if (pos > 0) {
          co_await net::async_write(server_, net::buffer(d.buffer.data(), pos),
                                    bound(server_write_cancel_));
        }
        fail(proto::sqlstate::protocol_violation, fmt::format("invalid message: {}", f.reason));
        stop_relay();
        co_return pump_end::client_protocol_error;
      }
      pos += f.size;
      bool is_start = f.kind == proto::frame_kind::whole || f.starts_message;
      if (is_start && (f.type == 'Q' || f.type == 'S' || f.type == 'F')) {
        ++requests_pending_;
      }
      if (f.kind == proto::frame_kind::whole && f.type == 'X') {
        terminated = true;
        break;
      }
    }

    if (pos > 0) {
      auto [wec, wn] = co_await net::async_write(server_, net::buffer(d.buffer.data(), pos),
                                                 bound(server_write_cancel_));
      if (wec) {
        stop_relay();
        co_return pump_end::server_closed;
      }
      d.bytes += pos;
      counters_.add_bytes_received(pos);
    }
    if (terminated) {
      stop_relay();
      co_return pump_end::client_terminated;
    }
    std::memmove(d.buffer.data(), d.buffer.data() + pos, d.end - pos);
    d.end -= pos;
  }
}

net::awaitable<session::pump_end> session::pump_server_to_client() {
  auto& d = *down_;
  // The server's first answer was read while logging in: relay it before reading more.
  bool has_unread = d.end > 0;
  for (;;) {
    if (relay_stop_) {
      co_return pump_end::stopped;
    }
    if (!has_unread) {
      auto [ec, n] = co_await server_.async_read_some(
          net::buffer(d.buffer.data() + d.end, d.buffer.size() - d.end),
          bound(server_read_cancel_));
      if (ec) {
        co_return on_server_read_error(ec);
      }
      d.end += n;
    }
    has_unread = false;

    std::size_t pos = 0;
    for (;;) {
      auto f = d.frames.next({d.buffer.data() + pos, d.end - pos});
      if (f.kind == proto::frame_kind::need_more) {
        break;
      }
      if (f.kind == proto::frame_kind::malformed) {
        stop_relay();
        fail(proto::sqlstate::protocol_violation,
             fmt::format("backend {} sent an invalid message: {}", backend_name_, f.reason));
        co_return pump_end::server_protocol_error;
      }
      if (f.kind == proto::frame_kind::whole) {
        on_server_message(f.type, {d.buffer.data() + pos, f.size});
      }
      pos += f.size;
    }

    if (pos > 0) {
      auto [wec, wn] =
          co_await net::async_write(client_, net::buffer(d.buffer.data(), pos), as_value);
      if (wec) {
        stop_relay();
        co_return pump_end::client_closed;
      }
      d.bytes += pos;
      counters_.add_bytes_sent(pos);
    }
    std::memmove(d.buffer.data(), d.buffer.data() + pos, d.end - pos);
    d.end -= pos;
  }
}

session::pump_end session::on_server_read_error(const boost::system::error_code& ec) {
  if (relay_stop_ && ec == net::error::operation_aborted) {
    return pump_end::stopped;
  }
  stop_relay();
  // A server connection lost under a client: probe the backend now (fall still counts).
  if (ctx_.report_sign_of_death) {
    ctx_.report_sign_of_death(backend_index_);
  }
  if (last_server_error_fatal_) {
    end_reason_ = "server sent FATAL and closed";
    return pump_end::server_closed;
  }
  // The server said nothing before it went away: the client must be told that its
  // connection is gone and that an in-flight transaction's outcome is unknown.
  bool is_outcome_unknown = transaction_status_ != 'I' || requests_pending_ > 0;
  fail(proto::sqlstate::connection_failure,
       fmt::format("server connection to backend {} lost: {}", backend_name_, describe_error(ec)),
       is_outcome_unknown ? "The outcome of the transaction in progress is unknown." : "");
  return pump_end::server_closed;
}

void session::on_server_message(char type, std::span<std::uint8_t> message) {
  auto body = message.subspan(proto::header_size);
  switch (type) {
    case 'Z':
      if (auto status = proto::parse_ready_for_query(body)) {
        transaction_status_ = *status;
      }
      if (requests_pending_ > 0) {
        --requests_pending_;
      }
      if (!login_complete_) {
        login_complete_ = true;
        set_phase(metrics::client_state::active);
        if (gate_epoch_ == 0) {
          ctx_.note_served(epoch_);
        }
        startup_timer_.cancel();
        spdlog::debug("login {}", fields());
      }
      break;
    case 'K':
      // The client sees its own key; the backend's stays here, for forwarding cancels.
      if (auto backend_key = proto::parse_backend_key_data(body)) {
        server_cancel_ = cancel_target{server_host_, server_port_, *backend_key};
        ctx_.cancels.attach(client_key_, *server_cancel_);
        key_registered_ = true;
        proto::write_int32(body.data(), client_key_.process_id);
        proto::write_int32(body.data() + 4, static_cast<std::int32_t>(client_key_.secret_key));
      }
      break;
    case 'E': {
      proto::error_fields fields;
      if (proto::parse_error_fields(body, fields)) {
        last_server_error_fatal_ = fields.severity == "FATAL" || fields.severity == "PANIC";
      }
      break;
    }
    default:
      break;
  }
}

// ---- ending ----

void session::fail(const char* sqlstate, std::string message, std::string detail) {
  if (pending_error_) {
    return;  // the first reason is the one the client and the log get
  }
  pending_error_ = fatal(sqlstate, message, detail);
  end_reason_ = fmt::format("{} {}", sqlstate, message);
  ctx_.metrics.count_client_error(sqlstate);
}

void session::terminate(const char* sqlstate, std::string message) {
  if (stopping_) {
    return;
  }
  fail(sqlstate, std::move(message));
  terminate_now();
}

void session::terminate_now() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  stop_relay();
  // A session waiting for a backend sleeps on the worker's broadcast; wake it (and its
  // neighbours, who simply wait again) so that it ends now.
  worker_.notify_route_changed();
}

void session::abort() {
  boost::system::error_code ec;
  stopping_ = true;
  stop_relay();
  client_.close(ec);
  server_.close(ec);
}

net::awaitable<bool> session::write_client(const proto::byte_buffer& message) {
  net::steady_timer deadline(client_.get_executor());
  deadline.expires_after(error_write_timeout);
  auto result = co_await (net::async_write(client_, net::buffer(message), as_value) ||
                          deadline.async_wait(as_value));
  if (result.index() != 0) {
    co_return false;
  }
  auto [ec, n] = std::get<0>(result);
  co_return !ec;
}

net::awaitable<void> session::finish() {
  startup_timer_.cancel();
  connect_timer_.cancel();
  drain_timer_.cancel();
  boost::system::error_code ec;

  // An error may only be injected between two whole messages of the server's stream.
  bool at_boundary = !down_ || !down_->frames.in_message();
  if (pending_error_ && at_boundary && client_.is_open()) {
    co_await write_client(*pending_error_);
  }
  if (server_.is_open() && login_complete_ && requests_pending_ > 0 && server_cancel_) {
    // The server goes on running a query whose client is gone until it next writes to the
    // socket, holding its locks meanwhile (a pg_sleep or a long scan can take minutes):
    // cancel it so that closing the connection ends the server session at once.
    net::steady_timer deadline(client_.get_executor());
    deadline.expires_after(error_write_timeout);
    co_await (send_cancel(*server_cancel_) || deadline.async_wait(as_value));
  }
  if (server_.is_open() && connected_ && (!up_ || !up_->frames.in_message())) {
    proto::byte_buffer bye;
    proto::append_terminate(bye);
    server_.non_blocking(true, ec);
    server_.write_some(net::buffer(bye), ec);  // best effort, never waits
  }
  server_.close(ec);
  client_.shutdown(net::socket_base::shutdown_both, ec);
  client_.close(ec);

  auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);
  bool is_warning = pending_error_ && !end_reason_.starts_with("57P01");
  spdlog::log(is_warning ? spdlog::level::warn : spdlog::level::debug,
              "session_end {} reason={:?} age_ms={} bytes_in={} bytes_out={}", fields(),
              end_reason_.empty() ? "unknown" : end_reason_, age.count(), up_ ? up_->bytes : 0,
              down_ ? down_->bytes : 0);
}

}  // namespace pgf::session
