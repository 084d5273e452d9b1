// Cancel keys: issue, attach, detach, look up.
#include "proxy/session/cancel_registry.hpp"

#include <openssl/rand.h>

namespace pgf::session {

protocol::cancel_key cancel_registry::issue() {
  protocol::cancel_key key;
  // Process ids wrap within the positive int32 range; a collision with a live client is
  // possible only after 2^31 connections and is caught by the secret check in find().
  auto pid = next_pid_.fetch_add(1, std::memory_order_relaxed) & 0x7fffffffu;
  key.process_id = static_cast<std::int32_t>(pid == 0 ? 1 : pid);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&key.secret_key), sizeof key.secret_key) != 1) {
    // OpenSSL's generator failing means the process cannot make unguessable keys; a
    // predictable secret would let anyone cancel other clients' queries.
    throw std::runtime_error("cannot generate a random cancel key");
  }
  return key;
}

void cancel_registry::attach(const protocol::cancel_key& client_key, cancel_target target) {
  auto& s = shard_for(client_key.process_id);
  std::lock_guard lock(s.mutex);
  s.targets[client_key.process_id] = {client_key.secret_key, std::move(target)};
}

void cancel_registry::detach(const protocol::cancel_key& client_key) {
  auto& s = shard_for(client_key.process_id);
  std::lock_guard lock(s.mutex);
  auto it = s.targets.find(client_key.process_id);
  if (it != s.targets.end() && it->second.first == client_key.secret_key) {
    s.targets.erase(it);
  }
}

std::optional<cancel_target> cancel_registry::find(const protocol::cancel_key& client_key) const {
  const auto& s = shard_for(client_key.process_id);
  std::lock_guard lock(s.mutex);
  auto it = s.targets.find(client_key.process_id);
  if (it == s.targets.end() || it->second.first != client_key.secret_key) {
    return std::nullopt;
  }
  return it->second.second;
}

}  // namespace pgf::session
