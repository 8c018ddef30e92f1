// ForwardBatch: the input of one model step, built by whoever schedules (the CLI's sequence
// runner now, the engine's ModelRunner from a StepPlan later). Tokens of one sequence are
// contiguous; every token's K/V is written into the paged cache before attention reads it, so
// chunked prefill, decode and prefix-cache hits are the same code path.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/paged_kv.h"

namespace moeserve {

// Tokens routed to each expert: counts[layer × num_experts + expert] (MoE layers only).
struct ExpertLoad {
  std::vector<int64_t> counts;
  int num_experts = 0;
  // Expert parallelism only, when sized by the caller: tokens per physical slot,
  // slot_counts[layer × num_slots + slot] (what each EP rank computed).
  std::vector<int64_t> slot_counts;
  int num_slots = 0;
};

struct ForwardBatch {
  std::span<const int32_t> token_ids;  // [T]
  std::span<const int32_t> positions;  // [T]
  std::vector<SequenceView> sequences;
  std::span<const int32_t> logit_rows;  // rows of the batch whose logits are wanted
  ExpertLoad* expert_load = nullptr;    // when set, MoE layers add their routing counts
};

}  // namespace moeserve
