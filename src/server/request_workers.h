// RequestWorkers: the bounded pool of threads that does a request's CPU work — parsing its JSON
// body, rendering the chat template, tokenizing — off the server's io thread, so that one large
// prompt (a 30 MB body takes seconds to tokenize) delays only itself, never the other clients.
//
// Two lanes, each with a bounded queue: tasks for large bodies (>= kLargeBodyBytes) run on at most
// num_threads - 1 workers at once, so at least one worker is always left for small requests however
// many large ones arrive; small tasks may run on any worker. Within what may run, the oldest task
// goes first. A full lane refuses the task (the caller answers 503) rather than queueing without
// bound. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moeserve {

class RequestWorkers {
 public:
  enum class Lane { kSmall, kLarge };
  // Bodies of at least this many bytes take the large lane.
  static constexpr size_t kLargeBodyBytes = size_t{1} << 20;

  struct Limits {
    int num_threads = 2;        // at least 2 (one of them is kept for small requests)
    size_t max_queued = 1024;   // small-lane tasks waiting for a worker
    size_t max_queued_large = 4;  // large-lane tasks waiting for a worker
  };
  // max(2, hardware threads / 2), at most 8: the engine's own threads keep the rest.
  static int default_num_threads();
  static Lane lane_for(size_t body_bytes) { return body_bytes >= kLargeBodyBytes ? Lane::kLarge : Lane::kSmall; }

  explicit RequestWorkers(Limits limits);
  ~RequestWorkers();  // stop()
  RequestWorkers(const RequestWorkers&) = delete;
  RequestWorkers& operator=(const RequestWorkers&) = delete;

  // Queues `task` on `lane`; false (the task is dropped unrun) when that lane's queue is full or
  // the pool has stopped.
  bool submit(Lane lane, std::function<void()> task);
  // Drops the queued tasks, lets the running ones finish and joins the threads. Idempotent; not
  // from a worker.
  void stop();

  const Limits& limits() const { return limits_; }

 private:
  struct Task {
    uint64_t sequence;
    std::function<void()> run;
  };
  void loop();
  bool large_may_run() const { return !large_.empty() && running_large_ < limits_.num_threads - 1; }

  const Limits limits_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Task> small_;
  std::deque<Task> large_;
  int running_large_ = 0;
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace moeserve
