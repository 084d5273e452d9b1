// posix_spawn of /bin/sh in its own process group, and a wait bounded by the deadline.
#include "proxy/router/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <variant>

#include <fmt/format.h>

extern char** environ;

namespace pgf::router {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// How often a wait looks at the stop token: bounds how long a shutdown waits for a hook.
constexpr milliseconds stop_check_interval{100};

std::string errno_text(int error) {
  return std::error_code(error, std::system_category()).message();
}

// The proxy's environment with `extra` replacing variables of the same name.
std::vector<std::string> build_environment(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('='));
    bool is_replaced = std::any_of(extra.begin(), extra.end(),
                                   [name](const auto& kv) { return kv.first == name; });
    if (!is_replaced) {
      out.emplace_back(entry);
    }
  }
  for (const auto& [name, value] : extra) {
    out.push_back(name + "=" + value);
  }
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

// Starts `sh -c command`; returns its pid, or an error text.
std::variant<pid_t, std::string> spawn_shell(const command_spec& spec) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args{"sh", "-c", spec.command};
  auto env = build_environment(spec.environment);
  auto argv = pointers(args);
  auto envp = pointers(env);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return errno_text(rc);
  }
  return pid;
}

// Waits until `pid` exits or `limit` passes; true when it exited (not yet reaped).
bool wait_readable(int pidfd, milliseconds limit) {
  pollfd p{pidfd, POLLIN, 0};
  int rc = ::poll(&p, 1, static_cast<int>(limit.count()));
  return rc > 0;
}

bool has_exited_by_polling(pid_t pid, milliseconds limit, int& status) {
  auto until = steady::now() + limit;
  while (true) {
    auto rc = ::waitpid(pid, &status, WNOHANG);
    if (rc == pid) {
      return true;
    }
    if (steady::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(std::min<milliseconds>(milliseconds(10), limit));
  }
}

command_result reap(pid_t pid, int status, bool is_reaped) {
  if (!is_reaped) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  command_result r;
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
    r.status = r.exit_code == 0 ? command_result::outcome::ok : command_result::outcome::failed;
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
    r.status = command_result::outcome::failed;
  }
  return r;
}

command_result kill_group(pid_t pid, command_result::outcome why) {
  ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  command_result r;
  r.status = why;
  return r;
}

// Waits for the child in slices so that a stop request is seen quickly. pidfd_open (Linux
// 5.3) lets poll() sleep until the exit; without it the wait polls waitpid every 10ms.
command_result wait_for(pid_t pid, steady::time_point deadline, const std::stop_token& stop) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  while (true) {
    if (stop.stop_requested()) {
      break;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady::now());
    if (left <= milliseconds(0)) {
      break;
    }
    auto slice = std::min(left, stop_check_interval);
    int status = 0;
    bool has_exited =
        pidfd >= 0 ? wait_readable(pidfd, slice) : has_exited_by_polling(pid, slice, status);
    if (has_exited) {
      if (pidfd >= 0) {
        ::close(pidfd);
      }
      return reap(pid, status, pidfd < 0);
    }
  }
  if (pidfd >= 0) {
    ::close(pidfd);
  }
  return kill_group(pid, stop.stop_requested() ? command_result::outcome::stopped
                                               : command_result::outcome::timeout);
}

}  // namespace

std::string command_result::describe() const {
  switch (status) {
    case outcome::ok:
      return "ok";
    case outcome::failed:
      return signal != 0 ? fmt::format("failed signal={}", signal)
                         : fmt::format("failed exit={}", exit_code);
    case outcome::timeout:
      return "timeout";
    case outcome::stopped:
      return "stopped";
    case outcome::not_started:
      return "not started: " + error;
  }
  return "unknown";
}

command_result run_shell_command(const command_spec& spec, std::stop_token stop) {
  auto started = steady::now();
  auto spawned = spawn_shell(spec);
  if (auto* error = std::get_if<std::string>(&spawned)) {
    command_result r;
    r.status = command_result::outcome::not_started;
    r.error = *error;
    return r;
  }

  auto result = wait_for(std::get<pid_t>(spawned), started + spec.timeout, stop);
  result.elapsed = std::chrono::duration_cast<milliseconds>(steady::now() - started);
  return result;
}

}  // namespace pgf::router
