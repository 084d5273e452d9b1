// The counters one worker thread updates on the data path: bytes relayed, clients accepted
// and clients by state. Each worker owns one cache line of them, so counting a message costs
// a plain load and store and never a lock, a locked instruction or a shared cache line.
//
// Threading contract: exactly one thread, the worker that owns the block, calls the
// updating functions; any thread may read (the /metrics scrape folds every block into the
// registry). That single writer is what lets add() skip the atomic read-modify-write.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pgf::metrics {

// A client's phase, as counted in pgfailover_client_connections{state}:
// login   - connected, startup or authentication not finished;
// active  - logged in and not waiting (it may or may not hold a server connection);
// waiting - logged in and waiting for a server connection, a pause or a switch.
enum class client_state : std::uint8_t { login, active, waiting };
inline constexpr std::size_t client_state_count = 3;

const char* to_string(client_state state);

class alignas(64) worker_counters {
 public:
  void add_bytes_received(std::uint64_t n) noexcept { add(bytes_received_, n); }
  void add_bytes_sent(std::uint64_t n) noexcept { add(bytes_sent_, n); }
  void count_client_accepted() noexcept { add(clients_accepted_, 1); }

  // A session calls enter() once when it starts, move() at each change of phase and
  // leave() with its last phase when it ends.
  void enter(client_state state) noexcept { shift(state, 1); }
  void leave(client_state state) noexcept { shift(state, -1); }
  void move(client_state from, client_state to) noexcept {
    shift(from, -1);
    shift(to, 1);
  }

  std::uint64_t bytes_received() const noexcept { return read(bytes_received_); }
  std::uint64_t bytes_sent() const noexcept { return read(bytes_sent_); }
  std::uint64_t clients_accepted() const noexcept { return read(clients_accepted_); }
  std::int64_t clients(client_state state) const noexcept {
    return clients_[static_cast<std::size_t>(state)].load(std::memory_order_relaxed);
  }

 private:
  static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static std::uint64_t read(const std::atomic<std::uint64_t>& counter) noexcept {
    return counter.load(std::memory_order_relaxed);
  }
  void shift(client_state state, std::int64_t by) noexcept {
    auto& slot = clients_[static_cast<std::size_t>(state)];
    slot.store(slot.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> clients_accepted_{0};
  std::array<std::atomic<std::int64_t>, client_state_count> clients_{};
};

static_assert(sizeof(worker_counters) == 64, "one cache line per worker");

}  // namespace pgf::metrics
