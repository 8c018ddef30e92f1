#include "model/layers/moe.h"

#include <cmath>

#include <fmt/format.h>

namespace moeserve {

Result<MoeBlock> MoeBlock::load(const ModelConfig& config, const WeightNames& names, const WeightSource& weights,
                                const std::string& prefix) {
  const MoeConfig& moe = *config.moe;
  const int64_t hidden = config.hidden_size;
  MoeBlock block;
  block.router_params_ = ops::RouterParams{.top_k = moe.top_k,
                                           .sigmoid = moe.scoring == RouterScoring::kSigmoid,
                                           .num_groups = moe.selection == RouterSelection::kTopK ? 1 : moe.num_groups,
                                           .topk_groups = moe.topk_groups,
                                           .group_score_top2_sum =
                                               moe.selection == RouterSelection::kGroupLimitedTop2Sum,
                                           .renormalize = moe.norm_topk_prob,
                                           .scaling_factor = moe.routed_scaling_factor};
  const std::string block_prefix = prefix + names.moe_block + ".";
  MS_ASSIGN_OR_RETURN(block.router_, weights.require(block_prefix + "gate.weight", Shape{moe.num_experts, hidden}));
  if (moe.has_score_correction_bias) {
    MS_ASSIGN_OR_RETURN(block.selection_bias_,
                        weights.require(block_prefix + "gate.e_score_correction_bias", Shape{moe.num_experts}));
  }
  block.experts_.reserve(moe.num_experts);
  for (int expert = 0; expert < moe.num_experts; ++expert) {
    MS_ASSIGN_OR_RETURN(SwigluMlp mlp, SwigluMlp::load(weights, fmt::format("{}experts.{}.", block_prefix, expert),
                                                       hidden, moe.expert_intermediate_size, names.expert_gate,
                                                       names.expert_up, names.expert_down));
    block.experts_.push_back(mlp);
  }
  if (moe.shared_intermediate_size > 0) {
    block.has_shared_ = true;
    MS_ASSIGN_OR_RETURN(block.shared_, SwigluMlp::load(weights, block_prefix + names.shared_expert + ".", hidden,
                                                       moe.shared_intermediate_size));
    if (moe.shared_expert_gate) {
      MS_ASSIGN_OR_RETURN(block.shared_gate_, weights.require(block_prefix + "shared_expert_gate.weight",
                                                              Shape{1, hidden}));
    }
  }
  return block;
}

void MoeBlock::forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const {
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  const int num_experts = static_cast<int>(experts_.size());
  const int top_k = router_params_.top_k;

  Tensor logits(DType::kF32, Shape{tokens, num_experts});
  ops::linear(ctx.exec, x, router_, TensorView{}, logits.view());
  Tensor expert_ids(DType::kI32, Shape{tokens, top_k});
  Tensor expert_weights(DType::kF32, Shape{tokens, top_k});
  ops::route(ctx.exec, logits.view(), selection_bias_, router_params_, expert_ids.view(), expert_weights.view());

  // Dispatch: the rows (and their weights) each expert received.
  std::vector<std::vector<int32_t>> rows(num_experts);
  std::vector<std::vector<float>> weights(num_experts);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int k = 0; k < top_k; ++k) {
      const int32_t expert = expert_ids.view().as<int32_t>()[t * top_k + k];
      rows[expert].push_back(static_cast<int32_t>(t));
      weights[expert].push_back(expert_weights.f32()[t * top_k + k]);
    }
  }
  if (ctx.batch.expert_load != nullptr) {
    int64_t* counts = ctx.batch.expert_load->counts.data() + static_cast<int64_t>(ctx.layer_idx) * num_experts;
    for (int expert = 0; expert < num_experts; ++expert) counts[expert] += static_cast<int64_t>(rows[expert].size());
  }
  std::fill(out.as<float>(), out.as<float>() + out.numel(), 0.0f);
  for (int expert = 0; expert < num_experts; ++expert) {
    if (rows[expert].empty()) continue;  // experts no token chose are skipped entirely
    const int64_t count = static_cast<int64_t>(rows[expert].size());
    Tensor gathered(DType::kF32, Shape{count, hidden});
    Tensor expert_out(DType::kF32, Shape{count, hidden});
    ops::gather_rows(ctx.exec, x, rows[expert], gathered.view());
    experts_[expert].forward(ctx.exec, gathered.view(), expert_out.view());
    ops::scatter_add_rows(ctx.exec, expert_out.view(), rows[expert], weights[expert], out);
  }

  if (has_shared_) {
    Tensor shared_out(DType::kF32, Shape{tokens, hidden});
    shared_.forward(ctx.exec, x, shared_out.view());
    std::vector<float> scale(tokens, 1.0f);
    if (shared_gate_.data != nullptr) {
      Tensor gate_logit(DType::kF32, Shape{tokens, 1});
      ops::linear(ctx.exec, x, shared_gate_, TensorView{}, gate_logit.view());
      for (int64_t t = 0; t < tokens; ++t) scale[t] = 1.0f / (1.0f + std::exp(-gate_logit.f32()[t]));
    }
    std::vector<int32_t> all_rows(tokens);
    for (int64_t t = 0; t < tokens; ++t) all_rows[t] = static_cast<int32_t>(t);
    ops::scatter_add_rows(ctx.exec, shared_out.view(), all_rows, scale, out);
  }
}

}  // namespace moeserve
