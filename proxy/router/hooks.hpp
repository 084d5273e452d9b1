// The on_switch hook: an operator's shell command run after every switch of the active
// backend (paging, DNS updates), with the switch in its environment:
//   PGFAILOVER_FROM    the previous active backend, empty when there was none
//   PGFAILOVER_TO      the new active backend, empty when there is none
//   PGFAILOVER_EPOCH   the new epoch
//   PGFAILOVER_REASON  a short fixed word: down, failback, switchover, ...
//   PGFAILOVER_DETAIL  the same in words
//
// Hooks run one at a time, in switch order, on a thread of their own, each bounded by
// hook_timeout; routing never waits for them. The report callback runs on that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "proxy/router/command.hpp"
#include "proxy/router/job_queue.hpp"

namespace pgf::router {

struct switch_hook_call {
  std::string command;
  std::optional<std::string> from;
  std::optional<std::string> to;
  std::uint64_t epoch = 0;
  std::string reason;
  std::string detail;
  std::chrono::milliseconds timeout{10000};
};

// The command, environment and deadline the hook runs with.
command_spec hook_command(const switch_hook_call& call);

class switch_hooks {
 public:
  using report = std::function<void(const switch_hook_call&, const command_result&)>;

  explicit switch_hooks(report on_done) : on_done_(std::move(on_done)) {}

  // Any thread; returns at once.
  void run(switch_hook_call call);

 private:
  report on_done_;
  job_queue queue_;  // last: its thread is joined before on_done_ goes
};

}  // namespace pgf::router
