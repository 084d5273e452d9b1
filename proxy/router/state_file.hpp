// The router's persisted decision: the epoch, the active backend and the fenced set, so that
// a restart neither forgets a failover nor returns to a fenced backend.
//
// Format (JSON): {"epoch": N, "active": "name" | null, "fenced": ["name", ...],
// "written_at": "2024-05-01T12:00:00.000Z"}, plus two keys the router also needs after a
// restart: "last_active" (the backend lost last while none is active, so that another one
// taking over still fences it) and "disabled" (an operator's maintenance outlives a restart).
// Unknown keys are ignored so that a newer version's file still reads.
//
// Writes are atomic: a temporary file in the same directory, fsync, rename over the old
// one, fsync of the directory. Both calls block on the file system; the router makes them
// on its control thread, and only when the decision changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgf::router {

struct persisted_state {
  std::uint64_t epoch = 0;
  std::optional<std::string> active;
  std::optional<std::string> last_active;
  std::vector<std::string> fenced;    // sorted, no duplicates
  std::vector<std::string> disabled;  // sorted, no duplicates

  bool operator==(const persisted_state&) const = default;
};

// A state file that exists but cannot be trusted. Starting anyway could send writes to
// two backends, so the proxy stops with this message, which names the file.
class state_file_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// nullopt when the file does not exist: a fresh start. Throws state_file_error when it
// cannot be read or is not a valid state (malformed JSON, wrong types, an active backend
// that is also fenced).
std::optional<persisted_state> read_state_file(const std::string& path);

// Replaces the file atomically. Returns what failed (naming the step and the file), or
// nullopt once the new state is durable.
std::optional<std::string> write_state_file(const std::string& path, const persisted_state& state,
                                            std::chrono::system_clock::time_point now);

// The file's text for `state`: what write_state_file writes.
std::string format_state(const persisted_state& state, std::chrono::system_clock::time_point now);

}  // namespace pgf::router
