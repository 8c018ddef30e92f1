// ModelRunner: executes a scheduler StepPlan on the CPU — runs every scheduled sequence's new
// tokens as one step of the model (CpuModel) over the paged KV memory it owns, and returns the
// logits of the sequences that sample this step. The runner that owns it picks the tokens (TokenPicker).
#pragma once

#include <span>
#include <vector>

#include "kvcache/kv_cache_manager.h"
#include "kvcache/kv_memory.h"
#include "runtime/cpu_model.h"
#include "runtime/runner_seq.h"

namespace moeserve {


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
