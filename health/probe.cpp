// The check connection's life: resolve, connect step by step with PQconnectPoll, run the
// check query and the ready_query with PQsendQuery/PQconsumeInput, all under one deadline.
#include "health/probe.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "health/failure_reason.hpp"

namespace pgf::health {

namespace asio = boost::asio;
using wait_type = asio::posix::descriptor_base::wait_type;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// More addresses than this for one name gain nothing within one probe's deadline.
constexpr std::size_t max_addresses = 8;

constexpr const char* stage_resolving = "resolving the host name";
constexpr const char* stage_connecting = "connecting";
constexpr const char* stage_check = "waiting for the check query";
constexpr const char* stage_ready = "waiting for the ready_query";

bool is_unix_socket_dir(const std::string& host) {
  return host.starts_with('/');
}

probe_outcome failed(std::string reason) {
  probe_outcome outcome;
  outcome.is_alive = false;
  outcome.reason = std::move(reason);
  return outcome;
}

std::string join(const std::vector<std::string>& parts) {
  std::string joined;
  for (const std::string& part : parts) {
    if (!joined.empty()) {
      joined += ',';
    }
    joined += part;
  }
  return joined;
}

// The server's primary message; libpq's whole text only when the server sent none.
std::string result_error_text(const PGresult* result) {
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  if (primary != nullptr && *primary != '\0') {
    return primary;
  }
  return describe_libpq_error(PQresultErrorMessage(result));
}

bool is_true_text(std::string_view text) {
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lowered == "t" || lowered == "true" || lowered == "on" || lowered == "1";
}

probe_outcome read_check_result(const PGresult* result) {
  if (result == nullptr) {
    return failed("the check query returned no result");
  }
  if (PQresultStatus(result) == PGRES_FATAL_ERROR) {
    return failed(result_error_text(result));
  }
  if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) != 1 ||
      PQnfields(result) < 2) {
    return failed("unexpected answer to the check query");
  }

  probe_outcome outcome;
  outcome.is_alive = true;
  bool in_recovery = is_true_text(PQgetvalue(result, 0, 0));
  outcome.role = in_recovery ? backend_role::standby : backend_role::primary;
  outcome.read_only = is_true_text(PQgetvalue(result, 0, 1));
  return outcome;
}

// The ready_query's verdict; an error in it (a missing table, say) makes the backend not
// ready, not down: the server itself answered.
void read_ready_result(const PGresult* result, probe_outcome& outcome) {
  outcome.ready = false;
  if (result == nullptr) {
    outcome.reason = "ready_query returned no result";
    return;
  }
  if (PQresultStatus(result) == PGRES_FATAL_ERROR) {
    outcome.reason = "ready_query failed: " + result_error_text(result);
    return;
  }
  if (PQresultStatus(result) != PGRES_TUPLES_OK || PQnfields(result) < 1) {
    outcome.reason = "ready_query returned no rows";
    return;
  }
  if (PQntuples(result) != 1) {
    outcome.reason = fmt::format("ready_query returned {} rows", PQntuples(result));
    return;
  }
  if (PQgetisnull(result, 0, 0) != 0) {
    outcome.reason = "ready_query returned null";
    return;
  }
  if (!is_true_text(PQgetvalue(result, 0, 0))) {
    outcome.reason = "ready_query returned false";
    return;
  }
  outcome.ready = true;
}

}  // namespace

probe::probe(asio::any_io_executor executor, probe_target target)
    : target_(std::move(target)),
      socket_(executor),
      deadline_(executor),
      resolver_(executor),
      resolve_wait_(executor) {}

probe::~probe() {
  close();
}

void probe::set_target(probe_target target) {
  if (!target.same_login(target_)) {
    needs_reconnect_ = true;
  }
  target_ = std::move(target);
}

void probe::cancel() {
  is_cancelled_ = true;
  boost::system::error_code ignored;
  socket_.cancel(ignored);
  resolve_wait_.cancel();
  deadline_.cancel();
}

void probe::close() {
  release_socket();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

asio::awaitable<std::optional<probe_outcome>> probe::run(std::chrono::milliseconds timeout) {
  // The coroutine frame keeps the probe alive across its suspensions.
  auto self = shared_from_this();
  begin_run(timeout);

  probe_outcome outcome = co_await run_checks();
  deadline_.cancel();

  if (is_cancelled_) {
    close();
    co_return std::nullopt;
  }
  if (!outcome.is_alive) {
    close();
  }
  co_return outcome;
}

void probe::begin_run(std::chrono::milliseconds timeout) {
  ++run_id_;
  timeout_ = timeout;
  is_timed_out_ = false;
  is_cancelled_ = false;

  deadline_.expires_after(timeout);
  deadline_.async_wait(
      [weak = weak_from_this(), run = run_id_](const boost::system::error_code& ec) {
        if (ec) {
          return;
        }
        auto self = weak.lock();
        if (self && self->run_id_ == run) {
          self->on_deadline();
        }
      });
}

// Whatever the run waits for is cancelled; the run sees the flag and reports the stage.
void probe::on_deadline() {
  is_timed_out_ = true;
  boost::system::error_code ignored;
  socket_.cancel(ignored);
  resolve_wait_.cancel();
}

probe::error probe::interrupted() const {
  if (is_cancelled_) {
    return "cancelled";
  }
  if (is_timed_out_) {
    return timeout_reason(timeout_, stage_);
  }
  return std::nullopt;
}

asio::awaitable<probe_outcome> probe::run_checks() {
  if (needs_reconnect_) {
    close();
    needs_reconnect_ = false;
  }

  if (conn_ == nullptr) {
    if (error failure = co_await open()) {
      co_return failed(std::move(*failure));
    }
  }

  co_return co_await query_server();
}

asio::awaitable<probe_outcome> probe::query_server() {
  stage_ = stage_check;
  auto started = clock::now();
  std::vector<result_ptr> results;
  if (error failure = co_await execute(check_query, results)) {
    co_return failed(std::move(*failure));
  }

  probe_outcome outcome = read_check_result(results.empty() ? nullptr : results.front().get());
  outcome.latency = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started);
  if (!outcome.is_alive || target_.ready_query.empty()) {
    co_return outcome;
  }

  stage_ = stage_ready;
  results.clear();
  if (error failure = co_await execute(target_.ready_query.c_str(), results)) {
    co_return failed(std::move(*failure));
  }

  read_ready_result(results.empty() ? nullptr : results.back().get(), outcome);
  co_return outcome;
}

asio::awaitable<probe::error> probe::open() {
  std::vector<std::string> addresses;
  if (!is_unix_socket_dir(target_.host)) {
    stage_ = stage_resolving;
    if (error failure = co_await resolve(addresses)) {
      co_return failure;
    }
  }

  stage_ = stage_connecting;
  start_connect(addresses);
  if (conn_ == nullptr) {
    co_return "out of memory";
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    co_return describe_libpq_error(PQerrorMessage(conn_));
  }

  adopt_socket();
  co_return co_await poll_connect();
}

asio::awaitable<probe::error> probe::resolve(std::vector<std::string>& addresses) {
  boost::system::error_code not_numeric;
  auto numeric = asio::ip::make_address(target_.host, not_numeric);
  if (!not_numeric) {
    addresses.push_back(numeric.to_string());
    co_return std::nullopt;
  }

  if (!is_resolving_) {
    start_resolve();
  }
  while (is_resolving_) {
    resolve_wait_.expires_at(asio::steady_timer::time_point::max());
    co_await resolve_wait_.async_wait(use_tuple);
    if (error stop = interrupted()) {
      co_return stop;
    }
  }

  if (resolve_error_) {
    co_return fmt::format("could not resolve host \"{}\": {}", target_.host,
                          resolve_error_.message());
  }
  if (resolved_addresses_.empty()) {
    co_return fmt::format("could not resolve host \"{}\": no addresses", target_.host);
  }
  addresses = resolved_addresses_;
  co_return std::nullopt;
}

void probe::start_resolve() {
  is_resolving_ = true;
  resolved_addresses_.clear();
  resolve_error_.clear();
  resolver_.async_resolve(
      target_.host, std::to_string(target_.port),
      [weak = weak_from_this()](const boost::system::error_code& ec,
                                const asio::ip::tcp::resolver::results_type& results) {
        if (auto self = weak.lock()) {
          self->on_resolved(ec, results);
        }
      });
}

void probe::on_resolved(const boost::system::error_code& ec,
                        const asio::ip::tcp::resolver::results_type& results) {
  is_resolving_ = false;
  resolve_error_ = ec;
  for (const auto& entry : results) {
    std::string address = entry.endpoint().address().to_string();
    bool is_new = std::find(resolved_addresses_.begin(), resolved_addresses_.end(), address) ==
                  resolved_addresses_.end();
    if (is_new && resolved_addresses_.size() < max_addresses) {
      resolved_addresses_.push_back(std::move(address));
    }
  }
  resolve_wait_.cancel();
}

// Keywords rather than a conninfo string: nothing holding the password is ever formatted.
// Every option that could come from the environment (PGSSLMODE, PGTARGETSESSIONATTRS...)
// and change what a probe means is set explicitly.
void probe::start_connect(const std::vector<std::string>& addresses) {
  std::vector<std::string> hosts(std::max<std::size_t>(addresses.size(), 1), target_.host);
  std::string host_list = join(hosts);
  std::string address_list = join(addresses);
  std::string port = std::to_string(target_.port);

  std::vector<const char*> keywords;
  std::vector<const char*> values;
  auto add = [&](const char* keyword, const std::string& value) {
    if (!value.empty()) {
      keywords.push_back(keyword);
      values.push_back(value.c_str());
    }
  };
  add("host", host_list);
  add("hostaddr", address_list);
  add("port", port);
  add("user", target_.user);
  add("password", target_.password);
  add("dbname", target_.dbname);
  add("sslmode", target_.sslmode);
  keywords.insert(keywords.end(), {"application_name", "gssencmode", "target_session_attrs"});
  values.insert(values.end(), {probe_application_name, "disable", "any"});
  keywords.push_back(nullptr);
  values.push_back(nullptr);

  conn_ = PQconnectStartParams(keywords.data(), values.data(), 0);
  if (conn_ != nullptr) {
    PQsetNoticeReceiver(conn_, &probe::on_notice, this);
  }
}

// libpq's default would print server notices (such as the warning a backend sends when
// the server shuts down) to stderr, outside the log.
void probe::on_notice(void* arg, const PGresult* notice) {
  const auto* self = static_cast<const probe*>(arg);
  const char* message = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
  spdlog::debug("check connection notice backend={} message={:?}", self->target_.name,
                message != nullptr ? message : "");
}

// libpq's documented loop: wait for what PQconnectPoll last asked for (writable at first),
// then call it again. libpq may close the socket and open another (the next address)
// inside PQconnectPoll, possibly under the same number, so the socket is released before
// each call and adopted afresh after it.
asio::awaitable<probe::error> probe::poll_connect() {
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED) {
      co_return describe_libpq_error(PQerrorMessage(conn_));
    }

    auto wait = status == PGRES_POLLING_READING ? wait_type::wait_read : wait_type::wait_write;
    if (error failure = co_await wait_socket(wait)) {
      co_return failure;
    }

    release_socket();
    status = PQconnectPoll(conn_);
    adopt_socket();
  }

  if (PQsetnonblocking(conn_, 1) != 0) {
    co_return describe_libpq_error(PQerrorMessage(conn_));
  }
  co_return std::nullopt;
}

// `sql` is read only before the first suspension: a reload may replace the target (and
// its ready_query) while the query is in flight.
asio::awaitable<probe::error> probe::execute(const char* sql, std::vector<result_ptr>& out) {
  bool is_sent = PQsendQuery(conn_, sql) != 0;
  forget_dropped_socket();
  if (!is_sent) {
    co_return connection_error(out);
  }
  if (error failure = co_await flush()) {
    co_return failure;
  }

  for (;;) {
    while (PQisBusy(conn_) != 0) {
      if (error failure = co_await wait_socket(wait_type::wait_read)) {
        co_return failure;
      }
      bool is_consumed = PQconsumeInput(conn_) != 0;
      forget_dropped_socket();
      if (!is_consumed) {
        co_return connection_error(out);
      }
    }
    PGresult* result = PQgetResult(conn_);
    forget_dropped_socket();
    if (result == nullptr) {
      break;
    }
    out.emplace_back(result, &PQclear);
  }

  if (PQstatus(conn_) == CONNECTION_BAD) {
    co_return connection_error(out);
  }
  co_return std::nullopt;
}

// The probe's queries are far smaller than a socket buffer, so waiting for writability
// alone cannot deadlock against a server that is itself writing.
asio::awaitable<probe::error> probe::flush() {
  for (;;) {
    int pending = PQflush(conn_);
    forget_dropped_socket();
    if (pending == 0) {
      co_return std::nullopt;
    }
    if (pending < 0) {
      co_return connection_error({});
    }
    if (error failure = co_await wait_socket(wait_type::wait_write)) {
      co_return failure;
    }
  }
}

asio::awaitable<probe::error> probe::wait_socket(wait_type w) {
  if (error stop = interrupted()) {
    co_return stop;
  }
  if (!socket_.is_open()) {
    co_return "lost the connection's socket";
  }

  auto [ec] = co_await socket_.async_wait(w, use_tuple);
  if (error stop = interrupted()) {
    co_return stop;
  }
  if (ec) {
    co_return ec.message();
  }
  co_return std::nullopt;
}

// A FATAL the server sent before closing says more than libpq's "server closed the
// connection" that follows it.
std::string probe::connection_error(const std::vector<result_ptr>& results) const {
  for (const result_ptr& result : results) {
    if (PQresultStatus(result.get()) == PGRES_FATAL_ERROR) {
      return result_error_text(result.get());
    }
  }
  return describe_libpq_error(PQerrorMessage(conn_));
}

void probe::adopt_socket() {
  int fd = PQsocket(conn_);
  if (fd < 0) {
    return;
  }
  boost::system::error_code ec;
  socket_.assign(fd, ec);
}

void probe::release_socket() {
  if (socket_.is_open()) {
    socket_.release();
  }
}

// libpq closes its socket itself when it sees the connection die (EOF, reset); Asio lets
// go of the number right after the call. Nothing on this thread can reuse the number in
// between, and if another thread did, the deregistration Asio attempts is made against our
// own epoll set, where that other file is not registered, so it fails harmlessly.
void probe::forget_dropped_socket() {
  if (socket_.is_open() && PQsocket(conn_) != socket_.native_handle()) {
    release_socket();
  }
}

}  // namespace pgf::health
