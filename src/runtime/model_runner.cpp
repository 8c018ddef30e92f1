#include "runtime/model_runner.h"

#include <algorithm>

namespace moeserve {

ModelRunner::ModelRunner(const DecoderModel& model, ExecContext& exec, const KvShape& kv_shape)
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
  std::vector<int32_t> token_ids, positions, logit_rows;
  ForwardBatch batch;
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
  batch.expert_load = &expert_load_;
  Tensor logits(DType::kF32, Shape{static_cast<int64_t>(logit_rows.size()), model_.config().vocab_size});
  if (!token_ids.empty()) model_.forward(exec_, batch, kv_, logits.view());
  return logits;
}

}  // namespace moeserve
