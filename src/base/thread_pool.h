// A fixed pool of worker threads for data-parallel loops in the CPU kernels. The pool is owned
// by whoever runs the model (no global pool) and handed to kernels through their context.
// parallel_for blocks until every chunk is done; it must not be called re-entrantly from inside
// a chunk.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moeserve {

class ThreadPool {
 public:
  // num_threads includes the calling thread; 0 means the hardware's concurrency.
  explicit ThreadPool(size_t num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t num_threads() const { return workers_.size() + 1; }

  // Splits [0, count) into contiguous chunks of at least `min_chunk` items and runs
  // fn(begin, end) on them, using the caller as one of the workers.
  void parallel_for(size_t count, size_t min_chunk,
                    const std::function<void(size_t begin, size_t end)>& fn);

 private:
  void worker_loop(size_t worker_idx);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_count_ = 0;
  size_t job_chunks_ = 0;
  size_t generation_ = 0;
  size_t pending_ = 0;
  bool stopping_ = false;
};

}  // namespace moeserve
