#include "runtime/token_picker.h"

namespace moeserve {

void TokenPicker::pick(ThreadPool* pool, std::span<const RunnerSeq> seqs, Tensor& logits) {
  // A sequence's rows: every new token's with all_logits, else its sampled row; the choice is for
  // the last one (the token that continues the sequence).
  row_choice_.clear();
  for (const RunnerSeq& seq : seqs) {
    const int rows = seq.all_logits ? seq.num_new : (seq.samples ? 1 : 0);
    for (int r = 0; r < rows; ++r) row_choice_.push_back(r == rows - 1 ? seq.choice : nullptr);
  }
  MS_CHECK(row_choice_.empty() || (logits.shape().rank() == 2 && logits.shape()[0] == int64_t(row_choice_.size())));
  pick(pool, row_choice_, logits.f32(), row_choice_.empty() ? 0 : logits.shape()[1]);
}

void TokenPicker::pick(ThreadPool* pool, std::span<const TokenChoice* const> row_choices, float* logits,
                       int64_t vocab) {
  const size_t rows = row_choices.size();
  tokens_.assign(rows, 0);
  logprobs_.assign(rows, TokenLogprob{});
  auto pick_rows = [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const std::span<float> values(logits + static_cast<int64_t>(row) * vocab, static_cast<size_t>(vocab));
      const TokenChoice* choice = row_choices[row];
      if (choice == nullptr || choice->argmax_only()) {
        tokens_[row] = argmax_token(values);
        continue;
      }
      std::vector<float> raw;  // logprobs are of the raw row, before edits and temperature
      if (choice->logprobs >= 0) raw.assign(values.begin(), values.end());
      apply_edits(values, choice->params, choice->edits);
      tokens_[row] = sample_with_uniform(values, choice->params, choice->uniform);
      if (choice->logprobs >= 0) logprobs_[row] = compute_logprobs(raw, tokens_[row], choice->logprobs);
    }
  };
  if (pool == nullptr) {
    pick_rows(0, rows);
  } else {
    pool->parallel_for(rows, 1, pick_rows);
  }
}

}  // namespace moeserve
