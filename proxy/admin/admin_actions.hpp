// What the admin API can read from and do to the running proxy. The server implements this
// interface; the HTTP handlers reach the proxy through it and nothing else.
//
// Threading: every call is made on the admin server's io_context, which is the control
// thread's, so no two calls run at the same moment. The coroutines suspend, though (a
// switchover while it drains, status while it counts the workers' sessions), and other
// requests (status, pause, even a second switchover) are served in the meantime: an
// implementation decides what may overlap. Nothing may block the event loop.
//
// `who` names the caller for logs and events: "admin:<peer address>", as in
// "admin:127.0.0.1:51234". `reason` is the operator's text, possibly empty.
#pragma once

#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

namespace pgf::admin {

// The outcome of an action, sent to the client as JSON: on success (2xx) the body is
// {"ok": true} plus the members of `detail`; otherwise {"error": error} plus `detail`.
//   200 done; 404 unknown backend; 409 refused (the target is not eligible, a switchover
//   is already running, ...); 422 reload refused (the configuration's problems in
//   detail["issues"], an array of "FILE:LINE: KEY: message" strings); 500 failed (the
//   state file could not be written).
struct action_result {
  int http_status = 200;
  std::string error;           // empty on success
  boost::json::object detail;  // extra members of the response body

  static action_result ok(boost::json::object detail = {}) { return {200, {}, std::move(detail)}; }
  static action_result failure(int status, std::string error, boost::json::object detail = {}) {
    return {status, std::move(error), std::move(detail)};
  }
  bool succeeded() const { return http_status >= 200 && http_status < 300; }
};

class admin_actions {
 public:
  virtual ~admin_actions() = default;

  // GET /status. An object; `pgfailover ctl status` reads these members (others are shown
  // only with --json):
  //   "active": name or null, "epoch": number, "paused": bool, "fenced": [names],
  //   "backends": [{"name", "priority", "state" (unknown|up|down),
  //                 "role" (unknown|primary|standby), "read_only": bool,
  //                 "latency_ms": number (last successful probe), "active": bool,
  //                 "fenced": bool, "disabled": bool, "eligible": bool,
  //                 "last_error": string, "pools": [...]}]
  virtual boost::asio::awaitable<boost::json::value> status() = 0;

  // GET /events, oldest first. An object {"events": [...]}, each event:
  //   "time": RFC 3339 UTC string, "kind": "switch" | "state" | "disable" | ...,
  //   "from", "to": backend names or null, "epoch": number, "reason": string,
  //   "who": "router", "health" or "admin:<peer>"
  virtual boost::json::value events() = 0;

  // GET /readyz: true when an active backend exists.
  virtual bool ready() = 0;

  // Before GET /metrics is rendered: bring the gauges that are counted on demand (server
  // connections, hook runs) up to date.
  virtual boost::asio::awaitable<void> refresh_metrics() = 0;

  // POST /switchover: a planned switch to `to`, draining first unless `force`.
  virtual boost::asio::awaitable<action_result> switchover(std::string to, bool force,
                                                           std::string reason, std::string who) = 0;

  // POST /backends/NAME/disable and /enable (enable also unfences). Disabling the active
  // backend drains like a switchover; it is refused when no other backend could take over,
  // unless `force`, which also skips the drain.
  virtual boost::asio::awaitable<action_result> disable(std::string name, bool force,
                                                        std::string reason, std::string who) = 0;
  virtual boost::asio::awaitable<action_result> enable(std::string name, std::string reason,
                                                       std::string who) = 0;

  // POST /pause and /resume: hold and release new transactions.
  virtual boost::asio::awaitable<action_result> pause(std::string reason, std::string who) = 0;
  virtual boost::asio::awaitable<action_result> resume(std::string reason, std::string who) = 0;

  // POST /reload: reread the configuration file.
  virtual boost::asio::awaitable<action_result> reload(std::string reason, std::string who) = 0;
};

}  // namespace pgf::admin
