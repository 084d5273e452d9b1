// One event-loop thread and the sessions that live on it.
//
// A session is created, run and destroyed on its worker's thread only, so the registry
// needs no lock: other threads reach the sessions by posting to io().
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "proxy/metrics/metrics.hpp"

namespace pgf::session {
class session;
}
namespace pgf::router {
struct routing_view;
}

namespace pgf {

// Server connections by backend name and phase, counted from the sessions themselves:
// what /status and /metrics show and what a switchover waits on.
struct server_census {
  using counts = std::array<std::uint32_t, metrics::server_state_count>;
  std::map<std::string, counts, std::less<>> backends;
  std::uint32_t clients = 0;

  void add(const server_census& other);
};

class worker {
 public:
  explicit worker(unsigned index)
      : index_(index), work_(io_.get_executor()), route_changed_(io_, never) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  boost::asio::io_context& io() { return io_; }
  unsigned index() const { return index_; }

  void start();
  // Lets the loop end once its work is done, then joins the thread.
  void stop_and_join();

  // Registry; call on this worker's thread only.
  std::list<session::session*>::iterator add(session::session* s) {
    return sessions_.insert(sessions_.end(), s);
  }
  void remove(std::list<session::session*>::iterator it) { sessions_.erase(it); }
  void for_each_session(const std::function<void(session::session&)>& fn);
  // This worker's sessions, counted; call on this worker's thread only.
  server_census census() const;

  // A broadcast to the sessions waiting for a backend: the timer never expires on its own;
  // each new routing view cancels it, which completes every pending wait with
  // operation_aborted, and later waits pend again. Wait and notify on this thread only.
  boost::asio::steady_timer& route_changed() { return route_changed_; }
  void notify_route_changed() { route_changed_.cancel(); }
  // A new routing view: wakes the waiting sessions and lets every session check that its
  // server connection still belongs to the current epoch.
  void on_route_changed(const std::shared_ptr<const router::routing_view>& view);

 private:
  unsigned index_;
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::list<session::session*> sessions_;
  boost::asio::steady_timer route_changed_;

  static constexpr auto never = boost::asio::steady_timer::time_point::max();
};

}  // namespace pgf
