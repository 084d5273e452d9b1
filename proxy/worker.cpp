// Worker threads: run the loop, walk the sessions.
#include "proxy/worker.hpp"

#include <spdlog/spdlog.h>

#include "proxy/session/session.hpp"

namespace pgf {

void worker::start() {
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // Sessions catch their own errors; reaching here is a bug in a handler. Keep the
        // loop alive: the other sessions on this thread are still being served.
        spdlog::error("worker_error worker={} error={:?}", index_, e.what());
      }
    }
  });
}

void worker::stop_and_join() {
  work_.reset();
  io_.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void worker::on_route_changed(const std::shared_ptr<const router::routing_view>& view) {
  notify_route_changed();
  for_each_session([&view](session::session& s) { s.on_route_changed(*view); });
}

server_census worker::census() const {
  server_census out;
  out.clients = static_cast<std::uint32_t>(sessions_.size());
  for (const auto* s : sessions_) {
    if (auto phase = s->server_phase()) {
      auto it = out.backends.try_emplace(s->backend_name()).first;
      ++it->second[static_cast<std::size_t>(*phase)];
    }
  }
  return out;
}

void server_census::add(const server_census& other) {
  clients += other.clients;
  for (const auto& [name, counts] : other.backends) {
    auto& mine = backends.try_emplace(name).first->second;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      mine[i] += counts[i];
    }
  }
}

void worker::for_each_session(const std::function<void(session::session&)>& fn) {
  // A callback may end a session, which removes it from the list: step first.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto* s = *it++;
    fn(*s);
  }
}

}  // namespace pgf
