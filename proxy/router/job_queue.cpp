// The job thread's loop: wait for a job or a stop, run the job outside the lock.
#include "proxy/router/job_queue.hpp"

#include <utility>

namespace pgf::router {

job_queue::job_queue() : thread_([this](std::stop_token stop) { run(std::move(stop)); }) {}

job_queue::~job_queue() {
  thread_.request_stop();
  wake_.notify_all();
}

void job_queue::push(job j) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(j));
  }
  wake_.notify_one();
}

void job_queue::run(std::stop_token stop) {
  while (true) {
    job next;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, stop, [this] { return !jobs_.empty(); });
      if (stop.stop_requested()) {
        return;
      }
      next = std::move(jobs_.front());
      jobs_.pop_front();
    }
    next(stop);
  }
}

}  // namespace pgf::router
