#include "runtime/model_runner.h"

#include <algorithm>


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
  Tensor logits(DType::kF32, Shape{logit_rows(seqs), model_.config().vocab_size});
  model_.forward(exec_, seqs, kv_, logits.view(), &expert_load_);
  return logits;
}

}  // namespace moeserve
