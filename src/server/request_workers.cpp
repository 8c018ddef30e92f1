// RequestWorkers: two bounded lanes over one set of threads.
#include "server/request_workers.h"

#include <algorithm>

namespace moeserve {

int RequestWorkers::default_num_threads() {
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(hardware / 2, 2, 8);
}

RequestWorkers::RequestWorkers(Limits limits) : limits_([&] {
  limits.num_threads = std::max(limits.num_threads, 2);
  return limits;
}()) {
  threads_.reserve(static_cast<size_t>(limits_.num_threads));
  for (int idx = 0; idx < limits_.num_threads; ++idx) threads_.emplace_back([this] { loop(); });
}

RequestWorkers::~RequestWorkers() { stop(); }

bool RequestWorkers::submit(Lane lane, std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    std::deque<Task>& queue = lane == Lane::kLarge ? large_ : small_;
    const size_t bound = lane == Lane::kLarge ? limits_.max_queued_large : limits_.max_queued;
    if (queue.size() >= bound) return false;
    queue.push_back(Task{next_sequence_++, std::move(task)});
  }
  ready_.notify_one();
  return true;
}

void RequestWorkers::stop() {
  {
    std::deque<Task> dropped_small;
    std::deque<Task> dropped_large;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ && threads_.empty()) return;
      stopping_ = true;
      dropped_small.swap(small_);
      dropped_large.swap(large_);
    }
    // The queued requests (and their bodies) go now, outside the lock, not after the join.
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

void RequestWorkers::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    ready_.wait(lock, [this] { return stopping_ || !small_.empty() || large_may_run(); });
    if (stopping_) return;
    // The oldest task that may run: a large one only while another worker stays free for small.
    const bool take_large = large_may_run() && (small_.empty() || large_.front().sequence < small_.front().sequence);
    std::deque<Task>& queue = take_large ? large_ : small_;
    std::function<void()> task = std::move(queue.front().run);
    queue.pop_front();
    if (take_large) ++running_large_;
    lock.unlock();
    task();
    task = nullptr;  // the request's body and state go before the next task
    lock.lock();
    if (take_large) {
      --running_large_;
      // A large task may now run where it could not: wake a worker that is waiting for one.
      if (!large_.empty()) ready_.notify_one();
    }
  }
}

}  // namespace moeserve
