// RunnerSeq: one sequence's part of a step, as the engine hands it to a Runner (runner.h), and
// ExpertLoad, the routing counts a runner keeps.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvcache/block_pool.h"
#include "runtime/sampler.h"

namespace moeserve {

struct RunnerSeq {
  std::span<const int32_t> tokens;  // all tokens of the sequence
  int num_computed = 0;             // tokens already in the cache
  int num_new = 0;                  // tokens to run now: tokens[num_computed, num_computed + num_new)
  bool samples = false;             // wants the logits of its last new token
  bool all_logits = false;          // wants the logits of every new token (prompt logprobs)
  // How to pick the token of its sampled row, when the engine needs nothing else from that row
  // (no logprobs): a runner that picks_tokens() then picks it and leaves the row unwritten.
  const TokenChoice* choice = nullptr;
  std::span<const BlockId> block_table;

  // Its rows of the step's logits: num_new when all_logits, else one when it samples.
  int logit_rows() const { return all_logits ? num_new : (samples ? 1 : 0); }
};

// Logits rows of a step: per sequence in order, as RunnerSeq::logit_rows.
inline int logit_rows(std::span<const RunnerSeq> seqs) {
  int rows = 0;
  for (const RunnerSeq& seq : seqs) rows += seq.logit_rows();
  return rows;
}

// Tokens routed to each expert: counts[layer × num_experts + expert] (MoE layers only).
struct ExpertLoad {
  std::vector<int64_t> counts;
  int num_experts = 0;
  // Expert parallelism only, when sized by the caller: tokens per physical slot,
  // slot_counts[layer × num_slots + slot] (what each EP rank computed).
  std::vector<int64_t> slot_counts;
  int num_slots = 0;
};

}  // namespace moeserve
