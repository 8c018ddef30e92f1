#include "runtime/model_runner.h"

#include <algorithm>

#include "runtime/step_batch.h"

namespace moeserve {

ModelRunner::ModelRunner(const CpuModel& model, ExecContext& exec, const KvShape& kv_shape)
    : model_(model), exec_(exec), kv_(kv_shape) {
  reset_expert_load();
}

void ModelRunner::reset_expert_load() {
  const ModelConfig& config = model_.config();
  const int experts = config.moe ? config.moe->num_experts : 0;
  expert_load_.counts.assign(static_cast<size_t>(config.num_layers) * experts, 0);
  expert_load_.num_experts = experts;
}

Tensor ModelRunner::execute(std::span<const RunnerSeq> seqs) {
  StepBatch step(seqs);
  ForwardBatch& batch = step.batch;
  batch.expert_load = &expert_load_;
  Tensor logits(DType::kF32, Shape{static_cast<int64_t>(step.logit_rows.size()), model_.config().vocab_size});
  if (!step.token_ids.empty()) model_.forward(exec_, batch, kv_, logits.view());
  return logits;
}

}  // namespace moeserve
