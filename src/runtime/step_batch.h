// StepBatch: one step's model inputs built from the runner's sequences, with the storage the
// ForwardBatch's spans point into — tokens of one sequence contiguous at positions
// [num_computed, num_computed + num_new), logit rows for the sequences that sample (every new
// row when all_logits). Shared by ModelRunner and RankGroup so both batch identically.
#pragma once

#include <span>
#include <vector>

#include "model/forward_batch.h"
#include "runtime/model_runner.h"

namespace moeserve {

struct StepBatch {
  std::vector<int32_t> token_ids, positions, logit_rows;
  ForwardBatch batch;

  explicit StepBatch(std::span<const RunnerSeq> seqs) {
    for (const RunnerSeq& seq : seqs) {
      const int begin = static_cast<int>(token_ids.size());
      for (int i = 0; i < seq.num_new; ++i) {
        token_ids.push_back(seq.tokens[seq.num_computed + i]);
        positions.push_back(seq.num_computed + i);
      }
      batch.sequences.push_back(SequenceView{begin, seq.num_new, seq.num_computed + seq.num_new, seq.block_table});
      if (seq.all_logits) {
        for (int i = 0; i < seq.num_new; ++i) logit_rows.push_back(begin + i);
      } else if (seq.samples) {
        logit_rows.push_back(begin + seq.num_new - 1);
      }
    }
    batch.token_ids = token_ids;
    batch.positions = positions;
    batch.logit_rows = logit_rows;
  }
  StepBatch(const StepBatch&) = delete;  // the spans point into this object's vectors
  StepBatch& operator=(const StepBatch&) = delete;
};

}  // namespace moeserve
