// Promotes a standby when the router asks for it, on a thread of its own so that neither a
// slow cloud CLI nor a slow server holds up routing. Two methods, chosen per backend:
// - promote = "sql": a libpq connection to the backend's URL (plus its `password` key)
//   running `SELECT pg_promote(wait => false)`; the router then waits for the probes to see
//   the backend leave recovery.
// - promote_command: `/bin/sh -c COMMAND` with PGFAILOVER_BACKEND and PGFAILOVER_EPOCH in
//   its environment; its process group is killed at promote_timeout.
// Both are bounded by the backend's promote_timeout. The report callback runs on the
// promoter's thread. Nothing here logs the URL or the password.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>

#include "proxy/config/config.hpp"
#include "proxy/router/job_queue.hpp"

namespace pgf::router {

struct promote_call {
  std::string backend;
  std::uint64_t epoch = 0;
  config::promote_method method = config::promote_method::none;
  std::optional<std::string> command;  // promote_command; used when set
  std::string url;                     // for libpq; never logged
  std::optional<std::string> password;
  std::chrono::milliseconds timeout{30000};
};

struct promote_outcome {
  bool is_ok = false;
  std::string text;  // "ok", or what failed: "timeout", "failed exit=1", "cannot connect: ..."
  std::chrono::milliseconds elapsed{0};
};

// The promote call for backend `b` in `epoch`.
promote_call make_promote_call(const config::backend_config& b, std::uint64_t epoch);

// Blocking; what the promoter's thread runs.
promote_outcome promote_with_sql(const promote_call& call, std::stop_token stop = {});
promote_outcome promote_with_command(const promote_call& call, std::stop_token stop = {});

class promoter {
 public:
  using report = std::function<void(const promote_call&, const promote_outcome&)>;

  explicit promoter(report on_done) : on_done_(std::move(on_done)) {}

  // Any thread; returns at once.
  void run(promote_call call);

 private:
  report on_done_;
  job_queue queue_;  // last: its thread is joined before on_done_ goes
};

}  // namespace pgf::router
