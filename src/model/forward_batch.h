// ForwardBatch: the input of one model step, built by whoever schedules (the CLI's sequence
// runner now, the engine's ModelRunner from a StepPlan later). Tokens of one sequence are
// contiguous; every token's K/V is written into the paged cache before attention reads it, so
// chunked prefill, decode and prefix-cache hits are the same code path.
#pragma once

#include <span>
#include <vector>

#include "kernels/paged_kv.h"

namespace moeserve {

struct ForwardBatch {
  std::span<const int32_t> token_ids;  // [T]
  std::span<const int32_t> positions;  // [T]
  std::vector<SequenceView> sequences;
  std::span<const int32_t> logit_rows;  // rows of the batch whose logits are wanted
};

}  // namespace moeserve
