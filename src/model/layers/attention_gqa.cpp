#include "model/layers/attention_gqa.h"

namespace moeserve {

Result<GqaAttention> GqaAttention::load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                                        const Partition& tp) {
  GqaAttention layer;
  layer.config_ = &config;
  layer.num_heads_ = config.num_heads / tp.size;
  layer.num_kv_heads_ = local_kv_heads(config, tp);
  layer.rope_ = build_rope_table(config.rope);
  const int64_t head_dim = config.head_dim;
  // Column-parallel: rows [first_head·D, (first_head + heads)·D) of the weight (and bias).
  auto load_heads = [&](WeightRole weight, WeightRole bias, int64_t first_head, int64_t heads) -> Result<LinearWeights> {
    LinearWeights linear;
    MS_ASSIGN_OR_RETURN(linear.weight, weights.rows(weight, layer_idx, first_head * head_dim, heads * head_dim));
    if (config.qkv_bias) {
      MS_ASSIGN_OR_RETURN(linear.bias, weights.rows(bias, layer_idx, first_head * head_dim, heads * head_dim));
    }
    return linear;
  };
  // A replicated KV head when there are fewer KV heads than ranks (vLLM's rule: rank r uses
  // head r / (tp / num_kv_heads)), else this rank's block.
  const int64_t first_kv = config.num_kv_heads >= tp.size ? static_cast<int64_t>(tp.rank) * layer.num_kv_heads_
                                                          : tp.rank / (tp.size / config.num_kv_heads);
  MS_ASSIGN_OR_RETURN(layer.q_proj_, load_heads(WeightRole::kQ, WeightRole::kQBias,
                                                static_cast<int64_t>(tp.rank) * layer.num_heads_, layer.num_heads_));
  MS_ASSIGN_OR_RETURN(layer.k_proj_, load_heads(WeightRole::kK, WeightRole::kKBias, first_kv, layer.num_kv_heads_));
  MS_ASSIGN_OR_RETURN(layer.v_proj_, load_heads(WeightRole::kV, WeightRole::kVBias, first_kv, layer.num_kv_heads_));
  // Row-parallel: this rank's input columns; the bias is added once, by rank 0.
  MS_ASSIGN_OR_RETURN(layer.o_proj_.weight, weights.shard(WeightRole::kO, layer_idx, tp));
  if (tp.rank == 0) {
    MS_ASSIGN_OR_RETURN(layer.o_proj_.bias, weights.whole_if_present(WeightRole::kOBias, layer_idx));
  }
  MS_ASSIGN_OR_RETURN(layer.q_norm_, weights.whole_if_present(WeightRole::kQNorm, layer_idx));
  MS_ASSIGN_OR_RETURN(layer.k_norm_, weights.whole_if_present(WeightRole::kKNorm, layer_idx));
  return layer;
}

void GqaAttention::forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const {
  const ModelConfig& config = *config_;
  const int64_t tokens = x.dim(0);
  const int64_t head_dim = config.head_dim;
  Tensor q(DType::kF32, Shape{tokens, num_heads_, head_dim});
  Tensor k(DType::kF32, Shape{tokens, num_kv_heads_, head_dim});
  Tensor v(DType::kF32, Shape{tokens, num_kv_heads_, head_dim});
  auto flat = [&](const Tensor& t) { return t.view().reshaped(Shape{tokens, t.shape()[1] * t.shape()[2]}); };
  ops::linear(ctx.exec, x, q_proj_.weight, q_proj_.bias, flat(q));
  ops::linear(ctx.exec, x, k_proj_.weight, k_proj_.bias, flat(k));
  ops::linear(ctx.exec, x, v_proj_.weight, v_proj_.bias, flat(v));
  if (q_norm_.data != nullptr) {
    ops::rms_norm(ctx.exec, q.view(), q_norm_, config.rms_norm_eps, q.view());
    ops::rms_norm(ctx.exec, k.view(), k_norm_, config.rms_norm_eps, k.view());
  }
  ops::rope(ctx.exec, q.view(), ctx.batch.positions, rope_.params());
  ops::rope(ctx.exec, k.view(), ctx.batch.positions, rope_.params());
  ops::kv_write(ctx.exec, ctx.kv, ctx.batch.sequences, flat(k), flat(v));
  Tensor attended(DType::kF32, Shape{tokens, num_heads_, head_dim});
  const ops::AttentionParams params{.num_heads = num_heads_,
                                    .num_kv_heads = num_kv_heads_,
                                    .head_dim = config.head_dim,
                                    .scale = config.attention_scale,
                                    .sliding_window = config.sliding_window};
  ops::attention(ctx.exec, q.view(), ctx.kv, ctx.batch.sequences, params, attended.view());
  ops::linear(ctx.exec, flat(attended), o_proj_.weight, o_proj_.bias, out);
  if (ctx.comm.tp != nullptr) ctx.comm.tp->all_reduce_sum(out);
}

}  // namespace moeserve
