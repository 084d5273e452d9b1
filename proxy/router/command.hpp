// Runs an operator's shell command (on_switch, promote_command) with extra environment
// variables under a deadline, and says how it ended.
//
// The command runs as `/bin/sh -c COMMAND` in a process group of its own, with stdin from
// /dev/null, stdout and stderr shared with the proxy, no other descriptor inherited and
// every signal at its default disposition. At the deadline, or when `stop` is requested,
// the whole process group gets SIGKILL, so a hook that started children cannot outlive it.
//
// Blocking: call it on a thread that may wait (never the control thread or a worker).
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

namespace pgf::router {

struct command_spec {
  std::string command;
  std::vector<std::pair<std::string, std::string>> environment;  // added to the proxy's own
  std::chrono::milliseconds timeout{10000};
};

struct command_result {
  enum class outcome { ok, failed, timeout, stopped, not_started };

  outcome status = outcome::not_started;
  int exit_code = 0;  // when it exited
  int signal = 0;     // when a signal ended it (other than our own SIGKILL)
  std::string error;  // why it could not start
  std::chrono::milliseconds elapsed{0};

  // "ok", "failed exit=3", "failed signal=11", "timeout", "stopped", "not started: ..."
  std::string describe() const;
};

command_result run_shell_command(const command_spec& spec, std::stop_token stop = {});

}  // namespace pgf::router
