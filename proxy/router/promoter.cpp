// Promotion by SQL (libpq, non-blocking under one deadline) or by a command.
#include "proxy/router/promoter.hpp"

#include <poll.h>

#include <algorithm>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "proxy/router/command.hpp"

namespace pgf::router {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

constexpr const char* promote_query = "SELECT pg_promote(wait => false)";
constexpr milliseconds stop_check_interval{100};

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct result_closer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;
using result_ptr = std::unique_ptr<PGresult, result_closer>;

// libpq's messages end in a newline and may span lines; a log line wants one.
std::string one_line(const char* message) {
  std::string text = message != nullptr ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text.empty() ? "unknown error" : text;
}

promote_outcome failed(std::string text, steady::time_point started) {
  return {false, std::move(text),
          std::chrono::duration_cast<milliseconds>(steady::now() - started)};
}

enum class wait_status { ready, timeout, stopped };

// Waits for the connection's socket in slices so that a stop request is seen quickly.
wait_status wait_socket(PGconn* conn, short events, steady::time_point deadline,
                        const std::stop_token& stop) {
  while (true) {
    if (stop.stop_requested()) {
      return wait_status::stopped;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
    if (left <= milliseconds(0)) {
      return wait_status::timeout;
    }
    pollfd p{PQsocket(conn), events, 0};
    if (::poll(&p, 1, static_cast<int>(std::min(left, stop_check_interval).count())) > 0) {
      return wait_status::ready;
    }
  }
}

const char* wait_text(wait_status status) {
  return status == wait_status::stopped ? "stopped" : "timeout";
}

// Opens the connection; returns nullptr and sets `error` on failure.
conn_ptr connect(const promote_call& call, steady::time_point deadline, const std::stop_token& stop,
                 std::string& error) {
  auto seconds = std::chrono::ceil<std::chrono::seconds>(call.timeout).count();
  std::string connect_timeout = std::to_string(std::max<long long>(seconds, 2));
  std::vector<const char*> keys{"dbname", "connect_timeout", "application_name"};
  std::vector<const char*> values{call.url.c_str(), connect_timeout.c_str(), "pgfailover-promote"};
  if (call.password) {
    keys.push_back("password");
    values.push_back(call.password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);

  conn_ptr conn(PQconnectStartParams(keys.data(), values.data(), 1));
  if (!conn || PQstatus(conn.get()) == CONNECTION_BAD) {
    error = "cannot connect: " + one_line(conn ? PQerrorMessage(conn.get()) : "out of memory");
    return nullptr;
  }
  auto status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED) {
      error = "cannot connect: " + one_line(PQerrorMessage(conn.get()));
      return nullptr;
    }
    short events = status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (auto w = wait_socket(conn.get(), events, deadline, stop); w != wait_status::ready) {
      error = wait_text(w);
      return nullptr;
    }
    status = PQconnectPoll(conn.get());
  }
  return conn;
}

// Reads every result of the query; the last one is the answer.
result_ptr read_result(PGconn* conn, steady::time_point deadline, const std::stop_token& stop,
                       std::string& error) {
  result_ptr last;
  while (true) {
    while (PQisBusy(conn)) {
      if (auto w = wait_socket(conn, POLLIN, deadline, stop); w != wait_status::ready) {
        error = wait_text(w);
        return nullptr;
      }
      if (PQconsumeInput(conn) == 0) {
        error = "lost the connection: " + one_line(PQerrorMessage(conn));
        return nullptr;
      }
    }
    result_ptr next(PQgetResult(conn));
    if (!next) {
      return last;
    }
    last = std::move(next);
  }
}

}  // namespace

promote_call make_promote_call(const config::backend_config& b, std::uint64_t epoch) {
  promote_call call;
  call.backend = b.name;
  call.epoch = epoch;
  call.method = b.promote;
  call.command = b.promote_command;
  call.url = b.url;
  call.password = b.password;
  call.timeout = b.promote_timeout;
  return call;
}

promote_outcome promote_with_sql(const promote_call& call, std::stop_token stop) {
  auto started = steady::now();
  auto deadline = started + call.timeout;
  std::string error;
  auto conn = connect(call, deadline, stop, error);
  if (!conn) {
    return failed(error, started);
  }

  if (PQsendQuery(conn.get(), promote_query) == 0) {
    return failed("cannot send pg_promote: " + one_line(PQerrorMessage(conn.get())), started);
  }
  auto result = read_result(conn.get(), deadline, stop, error);
  if (!result) {
    return failed(error.empty() ? std::string("pg_promote returned nothing") : error, started);
  }
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    return failed("pg_promote failed: " + one_line(PQresultErrorMessage(result.get())), started);
  }
  bool is_true =
      PQntuples(result.get()) == 1 && std::string_view(PQgetvalue(result.get(), 0, 0)) == "t";
  if (!is_true) {
    return failed("pg_promote returned false", started);
  }
  return {true, "ok", std::chrono::duration_cast<milliseconds>(steady::now() - started)};
}

promote_outcome promote_with_command(const promote_call& call, std::stop_token stop) {
  command_spec spec;
  spec.command = call.command.value_or("");
  spec.timeout = call.timeout;
  spec.environment = {{"PGFAILOVER_BACKEND", call.backend},
                      {"PGFAILOVER_EPOCH", std::to_string(call.epoch)}};
  auto result = run_shell_command(spec, stop);
  return {result.status == command_result::outcome::ok, result.describe(), result.elapsed};
}

void promoter::run(promote_call call) {
  queue_.push([this, call = std::move(call)](std::stop_token stop) {
    auto outcome = call.command ? promote_with_command(call, stop) : promote_with_sql(call, stop);
    if (on_done_) {
      on_done_(call, outcome);
    }
  });
}

}  // namespace pgf::router
