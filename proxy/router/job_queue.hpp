// A thread of its own that runs blocking jobs (hooks, promotions) one at a time, in the
// order they were pushed, so that they never hold up routing.
//
// Jobs receive a stop token: destruction requests a stop, drops the jobs not started and
// joins once the running job returns (jobs must honour the token within a short time).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>

namespace pgf::router {

class job_queue {
 public:
  using job = std::function<void(std::stop_token)>;

  job_queue();
  ~job_queue();
  job_queue(const job_queue&) = delete;
  job_queue& operator=(const job_queue&) = delete;

  // Any thread. Never blocks on a running job.
  void push(job j);

 private:
  void run(std::stop_token stop);

  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::deque<job> jobs_;
  std::jthread thread_;  // last: started after, and joined before, the members above go
};

}  // namespace pgf::router
