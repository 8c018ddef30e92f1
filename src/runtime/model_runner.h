// ModelRunner: executes a scheduler StepPlan on one device — gathers every scheduled
// sequence's new tokens into one ForwardBatch (with positions and block tables from the KV
// manager), runs the model over the paged KV memory it owns, and returns the logits of the
// sequences that sample this step. The runner that owns it picks the tokens (TokenPicker).
#pragma once

#include <span>
#include <vector>

#include "kvcache/kv_cache_manager.h"
#include "kvcache/kv_memory.h"
#include "runtime/cpu_model.h"
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
};

class ModelRunner {
 public:
  ModelRunner(const CpuModel& model, ExecContext& exec, const KvShape& kv_shape);

  const CpuModel& model() const { return model_; }
  const KvMemory& kv_memory() const { return kv_; }
  // Per-layer, per-expert routed token counts since the last reset (empty for dense models).
  const ExpertLoad& expert_load() const { return expert_load_; }
  void reset_expert_load();

  // logits [rows, vocab]: per sequence in order, num_new rows when all_logits, else one row
  // when it samples, else none.
  Tensor execute(std::span<const RunnerSeq> seqs);

 private:
  const CpuModel& model_;
  ExecContext& exec_;
  KvMemory kv_;
  ExpertLoad expert_load_;
};

}  // namespace moeserve
