// SequenceRunner: runs a single sequence through a DecoderModel with its own small paged KV
// cache (blocks handed out in order). It serves `moeserve logits`, `moeserve generate` and the
// golden tests; the serving engine's ModelRunner batches many sequences over a shared pool.
#pragma once

#include <span>
#include <vector>

#include "kvcache/kv_memory.h"
#include "model/decoder_model.h"

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
  const DecoderModel& model_;
  ExecContext& exec_;
  KvMemory kv_;
  std::vector<int32_t> block_table_;
  int capacity_;
  int length_ = 0;
};

}  // namespace moeserve
