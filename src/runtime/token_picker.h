// The runner's half of sampling (Runner::picks_tokens), on the host: for every logits row of a
// step, in row order, the token the sequence's TokenChoice picks (apply_edits + sample_with_uniform,
// the row edited in place; with the raw row's logprobs when it asks for them) or, without a
// choice, the row's argmax. Rows are independent and run in parallel on the thread pool; the CPU
// runners use it, the CUDA runner does the same on the device (cuda::sample_rows).
#pragma once

#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "runtime/logprobs.h"
#include "runtime/runner_seq.h"
#include "tensor/tensor.h"

namespace moeserve {

class TokenPicker {
 public:
  // The most top logprobs picked with a token (vLLM's default --max-logprobs).
  static constexpr int kMaxLogprobs = 20;

  // logits [rows, vocab] as Runner::execute returns them for `seqs`. pool may be null (serial).
  void pick(ThreadPool* pool, std::span<const RunnerSeq> seqs, Tensor& logits);
  // logits [row_choices.size(), vocab]: row r's token by row_choices[r] (null: the argmax).
  void pick(ThreadPool* pool, std::span<const TokenChoice* const> row_choices, float* logits, int64_t vocab);

  // Per logits row of the last pick: the token, and the logprobs of rows whose choice asked.
  std::span<const int32_t> tokens() const { return tokens_; }
  std::span<const TokenLogprob> logprobs() const { return logprobs_; }

 private:
  std::vector<int32_t> tokens_;
  std::vector<TokenLogprob> logprobs_;
  std::vector<const TokenChoice*> row_choice_;  // pick(seqs)'s per row: its choice, or null (argmax)
};

}  // namespace moeserve
