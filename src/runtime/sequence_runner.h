// SequenceRunner: one sequence through a CPU ModelRunner with its own small paged KV cache (or
// through any Runner with enough KV blocks, e.g. a CUDA or multi-rank one). It serves `moeserve
// logits`, `generate`, `bench latency` and the golden tests; the serving engine drives a
// Runner directly with many sequences over a shared block pool.
#pragma once

#include <span>
#include <vector>

#include <memory>

#include "runtime/cpu_model.h"
#include "runtime/runner.h"

namespace moeserve {

class SequenceRunner {
 public:
  static constexpr int kBlockSize = 16;

  // max_tokens: capacity of the sequence (prompt + generated).
  SequenceRunner(const CpuModel& model, ExecContext& exec, int max_tokens);
  // Over an existing runner, which must have blocks_for(max_tokens) KV blocks of kBlockSize.
  SequenceRunner(Runner& runner, int max_tokens);
  static int blocks_for(int tokens) { return (tokens + kBlockSize - 1) / kBlockSize; }
  SequenceRunner(const SequenceRunner&) = delete;  // runner_ may point at own_runner_
  SequenceRunner& operator=(const SequenceRunner&) = delete;
  ~SequenceRunner();

  int length() const { return length_; }
  int capacity() const { return capacity_; }

  // Appends `ids` to the sequence and runs them in one step (at most `max_chunk` tokens per
  // step when > 0, exercising chunked prefill). Returns logits [ids.size(), vocab] when
  // all_logits, else [1, vocab] for the last token.
  Result<Tensor> append(std::span<const int32_t> ids, bool all_logits, int max_chunk = 0);
  // Forgets the sequence: the next append() starts a new one at position 0 over the same KV
  // blocks (whose old entries it overwrites before reading them). `moeserve perplexity` runs its
  // windows one after another this way.
  void reset();

 private:
  std::unique_ptr<Runner> own_runner_;
  Runner* runner_ = nullptr;
  int vocab_ = 0;
  std::vector<BlockId> block_table_;
  std::vector<int32_t> tokens_;
  int capacity_;
  int length_ = 0;
};

}  // namespace moeserve
