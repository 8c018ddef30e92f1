#include "base/thread_pool.h"

#include <algorithm>

namespace moeserve {

ThreadPool::ThreadPool(size_t num_threads) {
  if (num_threads == 0) num_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  for (size_t worker_idx = 0; worker_idx + 1 < num_threads; ++worker_idx) {
    workers_.emplace_back([this, worker_idx] { worker_loop(worker_idx + 1); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
}

static void run_chunk(const std::function<void(size_t, size_t)>& fn, size_t count, size_t chunks,
                      size_t chunk_idx) {
  const size_t begin = count * chunk_idx / chunks;
  const size_t end = count * (chunk_idx + 1) / chunks;
  if (begin < end) fn(begin, end);
}

void ThreadPool::parallel_for(size_t count, size_t min_chunk,
                              const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  const size_t max_chunks = std::max<size_t>(1, count / std::max<size_t>(1, min_chunk));
  const size_t chunks = std::min(num_threads(), max_chunks);
  if (chunks == 1) {
    fn(0, count);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_count_ = count;
    job_chunks_ = chunks;
    pending_ = chunks - 1;
    ++generation_;
  }
  work_ready_.notify_all();
  run_chunk(fn, count, chunks, 0);
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(size_t worker_idx) {
  size_t seen_generation = 0;
  while (true) {
    const std::function<void(size_t, size_t)>* job;
    size_t count, chunks;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
      job = job_;
      count = job_count_;
      chunks = job_chunks_;
      if (worker_idx >= chunks) continue;
    }
    run_chunk(*job, count, chunks, worker_idx);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--pending_ == 0) work_done_.notify_all();
  }
}

}  // namespace moeserve
