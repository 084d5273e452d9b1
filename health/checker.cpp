// The checker's thread: one probing loop per backend, the state machines, and publication
// of the health view.
#include "health/checker.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pgf::health {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

const char* yes_no(bool value) {
  return value ? "true" : "false";
}

}  // namespace

checker::slot::slot(asio::any_io_executor executor, probe_target target,
                    const check_settings& settings)
    : prober(std::make_shared<probe>(executor, target)),
      machine(target.name, settings.fall, settings.rise, clock::now()),
      wake(executor) {}

checker::checker(std::vector<probe_target> targets, check_settings settings,
                 change_handler on_change)
    : settings_(settings), on_change_(std::move(on_change)) {
  for (probe_target& target : targets) {
    slots_.push_back(make_slot(std::move(target)));
  }

  // The first view is there before any probe; on_change first fires on a real change.
  publish();
}

checker::~checker() {
  stop();
}

checker::slot_ptr checker::make_slot(probe_target target) {
  return std::make_shared<slot>(io_.get_executor(), std::move(target), settings_);
}

void checker::start() {
  if (is_started_) {
    return;
  }
  is_started_ = true;
  work_.emplace(io_.get_executor());
  for (const slot_ptr& s : slots_) {
    spawn(s);
  }

  thread_ = std::thread([this] {
    try {
      io_.run();
    } catch (const std::exception& e) {
      spdlog::error("health checker stopped error={:?}", e.what());
    }
  });
}

void checker::stop() {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(io_, [this] { begin_stop(); });
  thread_.join();
}

void checker::request_probe(std::size_t index) {
  asio::post(io_, [this, index] { wake_for_probe(index); });
}

void checker::update_targets(std::vector<probe_target> targets) {
  asio::post(io_,
             [this, targets = std::move(targets)]() mutable { apply_targets(std::move(targets)); });
}

void checker::update_settings(check_settings settings) {
  asio::post(io_, [this, settings] { apply_settings(settings); });
}

// The loop's completion handler, not the loop, closes the connection and does the
// accounting, so that a loop ended by an exception is accounted for too.
void checker::spawn(const slot_ptr& s) {
  ++running_loops_;
  asio::co_spawn(io_, probe_backend(s), [this, s](std::exception_ptr failure) {
    s->prober->close();
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& e) {
        spdlog::error("health probing stopped backend={} error={:?}", s->machine.health().name,
                      e.what());
      }
    }
    on_loop_finished();
  });
}

asio::awaitable<void> checker::probe_backend(slot_ptr s) {
  while (!is_finished(*s)) {
    co_await wait_for_turn(*s);
    if (is_finished(*s)) {
      break;
    }

    s->last_start = clock::now();
    s->is_in_flight = true;
    std::optional<probe_outcome> outcome = co_await s->prober->run(settings_.timeout);
    s->is_in_flight = false;
    if (!outcome || is_finished(*s)) {
      break;
    }

    record(*s, *outcome);
  }
}

// next_start may move earlier while waiting (request_probe cancels the timer), so the
// wait is re-armed until its time has come.
asio::awaitable<void> checker::wait_for_turn(slot& s) {
  while (!is_finished(s) && clock::now() < s.next_start) {
    s.wake.expires_at(s.next_start);
    co_await s.wake.async_wait(use_tuple);
  }
}

void checker::record(slot& s, const probe_outcome& outcome) {
  auto now = clock::now();
  backend_health before = s.machine.health();
  s.machine.record(outcome, now);
  if (on_probe_) {
    on_probe_(before.name,
              std::chrono::duration_cast<std::chrono::microseconds>(now - s.last_start),
              outcome.is_alive);
  }

  // A failure is retried at once while the backend is still counted up (so that `fall`
  // failures take milliseconds, not fall * interval); once it is down, at `interval`: a
  // dead port or a refused login must not be hammered.
  if (outcome.is_alive || s.machine.health().state == backend_state::down) {
    s.next_start = s.last_start + settings_.interval;
  } else {
    s.next_start = std::max(now, s.last_start + min_probe_gap);
  }

  log_change(before, s.machine.health());
  publish();
}

// Transitions only: a backend that stays down logs nothing more; counts are in the view.
void checker::log_change(const backend_health& before, const backend_health& after) const {
  if (before.state != after.state && after.state == backend_state::down) {
    spdlog::warn("backend down backend={} consecutive_failures={} reason={:?}", after.name,
                 after.consecutive_failures, after.last_error);
    return;
  }
  if (before.state != after.state && after.state == backend_state::up) {
    spdlog::info("backend up backend={} role={} read_only={} ready={} latency_us={}", after.name,
                 to_string(after.role), yes_no(after.read_only), yes_no(after.ready),
                 after.latency.count());
    return;
  }

  bool is_changed = before.role != after.role || before.read_only != after.read_only ||
                    before.ready != after.ready;
  if (is_changed && after.consecutive_failures == 0) {
    spdlog::info("backend changed backend={} role={} read_only={} ready={} reason={:?}", after.name,
                 to_string(after.role), yes_no(after.read_only), yes_no(after.ready),
                 after.last_error);
    return;
  }
  if (after.consecutive_failures > before.consecutive_failures &&
      after.state == backend_state::up) {
    spdlog::debug("probe failed backend={} consecutive_failures={} reason={:?}", after.name,
                  after.consecutive_failures, after.last_error);
  }
}

void checker::publish() {
  auto view = std::make_shared<health_view>();
  view->generation = ++generation_;
  view->backends.reserve(slots_.size());
  bool all_probed = true;
  for (const slot_ptr& s : slots_) {
    view->backends.push_back(s->machine.health());
    all_probed = all_probed && s->machine.health().probes > 0;
  }
  first_round_complete_ = first_round_complete_ || all_probed;
  view->first_round_complete = first_round_complete_;
  view_.store(view, std::memory_order_release);

  std::vector<routing_key> keys;
  keys.reserve(view->backends.size());
  for (const backend_health& b : view->backends) {
    keys.push_back({b.name, b.state, b.role, b.read_only, b.ready});
  }
  bool is_first = !notified_.has_value();
  if (!is_first && *notified_ == keys && notified_first_round_ == first_round_complete_) {
    return;
  }
  notified_ = std::move(keys);
  notified_first_round_ = first_round_complete_;
  if (is_first || !on_change_) {
    return;
  }

  // A throwing callback must not end the probing of this backend.
  try {
    on_change_(view);
  } catch (const std::exception& e) {
    spdlog::error("health change handler failed error={:?}", e.what());
  }
}

void checker::apply_targets(std::vector<probe_target> targets) {
  if (is_stopping_) {
    return;
  }

  std::vector<slot_ptr> next;
  std::vector<bool> is_kept(slots_.size(), false);
  for (probe_target& target : targets) {
    auto same = [&](std::size_t i) {
      return !is_kept[i] && slots_[i]->prober->target().same_address(target);
    };
    std::size_t i = 0;
    while (i < slots_.size() && !same(i)) {
      ++i;
    }
    if (i < slots_.size()) {
      is_kept[i] = true;
      slots_[i]->prober->set_target(std::move(target));
      next.push_back(slots_[i]);
      continue;
    }
    slot_ptr added = make_slot(std::move(target));
    spawn(added);
    next.push_back(std::move(added));
  }

  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (!is_kept[i]) {
      slots_[i]->is_removed = true;
      slots_[i]->wake.cancel();
      slots_[i]->prober->cancel();
    }
  }
  slots_ = std::move(next);
  publish();
}

void checker::apply_settings(const check_settings& settings) {
  settings_ = settings;
  for (const slot_ptr& s : slots_) {
    s->machine.set_thresholds(settings.fall, settings.rise);
  }
}

void checker::wake_for_probe(std::size_t index) {
  if (is_stopping_ || index >= slots_.size()) {
    return;
  }
  slot& s = *slots_[index];
  if (s.is_in_flight) {
    return;
  }
  s.prober->reconnect_next_run();
  s.next_start = std::max(clock::now(), s.last_start + min_probe_gap);
  s.wake.cancel();
}

// Loops end at their next step; the context is stopped once the last one has, rather than
// left to drain, because a host name lookup abandoned by a timeout may still be pending.
void checker::begin_stop() {
  is_stopping_ = true;
  for (const slot_ptr& s : slots_) {
    s->wake.cancel();
    s->prober->cancel();
  }
  work_.reset();
  if (running_loops_ == 0) {
    io_.stop();
  }
}

void checker::on_loop_finished() {
  --running_loops_;
  if (is_stopping_ && running_loops_ == 0) {
    io_.stop();
  }
}

}  // namespace pgf::health
