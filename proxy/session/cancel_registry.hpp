// Maps the BackendKeyData the proxy gave each client to the backend connection that serves
// it, so that a CancelRequest reaches the right server.
//
// Every client gets its own key (a unique process id and a random secret) even though
// several clients may share one server connection over time; the backend's own key is
// never shown to a client. Thread-safe: a mutex per shard, taken once when a session
// attaches or detaches and once per CancelRequest, never per message.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "protocol/startup.hpp"

namespace pgf::session {

// Where a cancel for one client must go: the server it is attached to, and that
// server's own key.
struct cancel_target {
  std::string host;  // the address the server connection was opened to
  std::uint16_t port = 0;
  protocol::cancel_key backend_key;
};

class cancel_registry {
 public:
  // A fresh key for a new client: unique process id among live clients, random secret.
  protocol::cancel_key issue();
  // Points `client_key` at the server connection now serving it.
  void attach(const protocol::cancel_key& client_key, cancel_target target);
  void detach(const protocol::cancel_key& client_key);
  // The target for a CancelRequest, when both process id and secret match.
  std::optional<cancel_target> find(const protocol::cancel_key& client_key) const;

 private:
  static constexpr std::size_t shard_count = 16;
  struct shard {
    mutable std::mutex mutex;
    std::unordered_map<std::int32_t, std::pair<std::uint32_t, cancel_target>> targets;
  };
  shard& shard_for(std::int32_t pid) { return shards_[std::uint32_t(pid) % shard_count]; }
  const shard& shard_for(std::int32_t pid) const {
    return shards_[std::uint32_t(pid) % shard_count];
  }

  std::array<shard, shard_count> shards_;
  std::atomic<std::uint32_t> next_pid_{1};
};

}  // namespace pgf::session
