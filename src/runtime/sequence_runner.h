// SequenceRunner: one sequence through a ModelRunner with its own small paged KV cache. It
// serves `moeserve logits`, `generate`, `bench latency` and the golden tests; the serving
// engine drives ModelRunner directly with many sequences over a shared block pool.
#pragma once

#include <span>
#include <vector>

#include "runtime/model_runner.h"

namespace moeserve {

class SequenceRunner {
 public:
  static constexpr int kBlockSize = 16;

  // max_tokens: capacity of the sequence (prompt + generated).
  SequenceRunner(const DecoderModel& model, ExecContext& exec, int max_tokens);

  int length() const { return length_; }
  int capacity() const { return capacity_; }

  // Appends `ids` to the sequence and runs them in one step (at most `max_chunk` tokens per
  // step when > 0, exercising chunked prefill). Returns logits [ids.size(), vocab] when
  // all_logits, else [1, vocab] for the last token.
  Result<Tensor> append(std::span<const int32_t> ids, bool all_logits, int max_chunk = 0);

 private:
  ModelRunner runner_;
  std::vector<BlockId> block_table_;
  std::vector<int32_t> tokens_;
  int capacity_;
  int length_ = 0;
};

}  // namespace moeserve
