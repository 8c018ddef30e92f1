#include "model/layers/attention_gqa.h"

namespace moeserve {

Result<GqaAttention> GqaAttention::load(const ModelConfig& config, const WeightSource& weights,
                                        const std::string& prefix) {
  GqaAttention layer;
  layer.config_ = &config;
  layer.rope_ = build_rope_table(config.rope);
  const int64_t hidden = config.hidden_size;
  const int64_t q_out = static_cast<int64_t>(config.num_heads) * config.head_dim;
  const int64_t kv_out = static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  auto load_linear = [&](const std::string& name, int64_t out, int64_t in, bool bias) -> Result<LinearWeights> {
    LinearWeights linear;
    MS_ASSIGN_OR_RETURN(linear.weight, weights.require(prefix + name + ".weight", Shape{out, in}));
    if (bias) {
      MS_ASSIGN_OR_RETURN(linear.bias, weights.require(prefix + name + ".bias", Shape{out}));
    }
    return linear;
  };
  MS_ASSIGN_OR_RETURN(layer.q_proj_, load_linear("q_proj", q_out, hidden, config.qkv_bias));
  MS_ASSIGN_OR_RETURN(layer.k_proj_, load_linear("k_proj", kv_out, hidden, config.qkv_bias));
  MS_ASSIGN_OR_RETURN(layer.v_proj_, load_linear("v_proj", kv_out, hidden, config.qkv_bias));
  MS_ASSIGN_OR_RETURN(layer.o_proj_, load_linear("o_proj", hidden, q_out, config.o_bias));
  if (config.qk_norm) {
    MS_ASSIGN_OR_RETURN(layer.q_norm_, weights.require(prefix + "q_norm.weight", Shape{config.head_dim}));
    MS_ASSIGN_OR_RETURN(layer.k_norm_, weights.require(prefix + "k_norm.weight", Shape{config.head_dim}));
  }
  return layer;
}

void GqaAttention::forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const {
  const ModelConfig& config = *config_;
  const int64_t tokens = x.dim(0);
  const int64_t head_dim = config.head_dim;
  Tensor q(DType::kF32, Shape{tokens, config.num_heads, head_dim});
  Tensor k(DType::kF32, Shape{tokens, config.num_kv_heads, head_dim});
  Tensor v(DType::kF32, Shape{tokens, config.num_kv_heads, head_dim});
  auto flat = [&](const Tensor& t) { return t.view().reshaped(Shape{tokens, t.numel() / tokens}); };
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
  Tensor attended(DType::kF32, Shape{tokens, config.num_heads, head_dim});
  const ops::AttentionParams params{.num_heads = config.num_heads,
                                    .num_kv_heads = config.num_kv_heads,
                                    .head_dim = config.head_dim,
                                    .scale = config.attention_scale,
                                    .sliding_window = config.sliding_window};
  ops::attention(ctx.exec, q.view(), ctx.kv, ctx.batch.sequences, params, attended.view());
  ops::linear(ctx.exec, flat(attended), o_proj_.weight, o_proj_.bias, out);
}

}  // namespace moeserve
