#include "model/layers/attention_mla.h"

#include <cstring>

namespace moeserve {

Result<MlaAttention> MlaAttention::load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                                        MlaMode mode, const Partition& tp) {
  MlaAttention layer;
  layer.config_ = &config;
  layer.mode_ = mode;
  layer.num_heads_ = config.num_heads / tp.size;
  layer.rope_ = build_rope_table(config.rope);
  if (config.mla->q_lora_rank > 0) {
    MS_ASSIGN_OR_RETURN(layer.q_a_proj_.weight, weights.whole(WeightRole::kQA, layer_idx));
    MS_ASSIGN_OR_RETURN(layer.q_a_norm_, weights.whole(WeightRole::kQANorm, layer_idx));
    MS_ASSIGN_OR_RETURN(layer.q_b_proj_.weight, weights.shard(WeightRole::kQB, layer_idx, tp));
  } else {
    MS_ASSIGN_OR_RETURN(layer.q_proj_.weight, weights.shard(WeightRole::kQ, layer_idx, tp));
  }
  MS_ASSIGN_OR_RETURN(layer.kv_a_proj_.weight, weights.whole(WeightRole::kKvA, layer_idx));
  MS_ASSIGN_OR_RETURN(layer.kv_a_norm_, weights.whole(WeightRole::kKvANorm, layer_idx));
  MS_ASSIGN_OR_RETURN(layer.kv_b_proj_.weight, weights.shard(WeightRole::kKvB, layer_idx, tp));
  MS_ASSIGN_OR_RETURN(layer.o_proj_.weight, weights.shard(WeightRole::kO, layer_idx, tp));
  if (mode != MlaMode::kNaive) {
    const TensorView& kv_b = layer.kv_b_proj_.weight;
    layer.kv_b_f32_ = Tensor(DType::kF32, kv_b.shape);
    convert_to_f32(kv_b.dtype, kv_b.data, layer.kv_b_f32_.f32(), kv_b.numel());
  }
  return layer;
}

void MlaAttention::compute_query(LayerContext& ctx, const TensorView& x, const TensorView& q) const {
  const int64_t tokens = x.dim(0);
  const TensorView q_flat = q.reshaped(Shape{tokens, q.dim(1) * q.dim(2)});
  if (q_a_proj_.weight.data != nullptr) {
    Tensor q_latent(DType::kF32, Shape{tokens, q_a_proj_.out_features()});
    ops::linear(ctx.exec, x, q_a_proj_.weight, q_a_proj_.bias, q_latent.view());
    ops::rms_norm(ctx.exec, q_latent.view(), q_a_norm_, config_->rms_norm_eps, q_latent.view());
    ops::linear(ctx.exec, q_latent.view(), q_b_proj_.weight, q_b_proj_.bias, q_flat);
  } else {
    ops::linear(ctx.exec, x, q_proj_.weight, q_proj_.bias, q_flat);
  }
  ops::rope(ctx.exec, q, ctx.batch.positions, rope_.params(config_->mla->qk_nope_head_dim));
}

void MlaAttention::forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const {
  const MlaConfig& mla = *config_->mla;
  const int64_t tokens = x.dim(0);
  const int64_t heads = num_heads_;
  Tensor q(DType::kF32, Shape{tokens, heads, mla.qk_head_dim()});
  compute_query(ctx, x, q.view());

  // The cached part: latent c (normalised) and the rope key, written before attention reads.
  Tensor compressed(DType::kF32, Shape{tokens, mla.kv_lora_rank + mla.qk_rope_head_dim});
  ops::linear(ctx.exec, x, kv_a_proj_.weight, kv_a_proj_.bias, compressed.view());
  Tensor latent(DType::kF32, Shape{tokens, mla.kv_lora_rank});
  Tensor rope_key(DType::kF32, Shape{tokens, 1, mla.qk_rope_head_dim});
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = compressed.f32() + t * compressed.view().row_size();
    std::memcpy(latent.f32() + t * mla.kv_lora_rank, row, mla.kv_lora_rank * sizeof(float));
    std::memcpy(rope_key.f32() + t * mla.qk_rope_head_dim, row + mla.kv_lora_rank,
                mla.qk_rope_head_dim * sizeof(float));
  }
  ops::rms_norm(ctx.exec, latent.view(), kv_a_norm_, config_->rms_norm_eps, latent.view());
  ops::rope(ctx.exec, rope_key.view(), ctx.batch.positions, rope_.params());
  ops::kv_write(ctx.exec, ctx.kv, ctx.batch.sequences, latent.view(),
                rope_key.view().reshaped(Shape{tokens, mla.qk_rope_head_dim}));

  bool all_decode = true;
  for (const SequenceView& seq : ctx.batch.sequences) all_decode = all_decode && seq.num_query == 1;
  const bool absorbed = mode_ == MlaMode::kAbsorbed || (mode_ == MlaMode::kAuto && all_decode);
  Tensor attended(DType::kF32, Shape{tokens, heads, mla.v_head_dim});
  if (absorbed) {
    attend_absorbed(ctx, q.view(), attended.view());
  } else {
    attend_naive(ctx, q.view(), attended.view());
  }
  ops::linear(ctx.exec, attended.view().reshaped(Shape{tokens, heads * mla.v_head_dim}), o_proj_.weight,
              o_proj_.bias, out);
  if (ctx.comm.tp != nullptr) ctx.comm.tp->all_reduce_sum(out);
}

void MlaAttention::attend_naive(LayerContext& ctx, const TensorView& q, const TensorView& attended) const {
  const MlaConfig& mla = *config_->mla;
  const int64_t heads = num_heads_;
  const int64_t nope = mla.qk_nope_head_dim;
  const int64_t rope_dim = mla.qk_rope_head_dim;
  const int64_t v_dim = mla.v_head_dim;
  for (const SequenceView& seq : ctx.batch.sequences) {
    const int64_t context = seq.context_len;
    Tensor cached(DType::kF32, Shape{context, ctx.kv.entry_size});
    ops::kv_gather(ctx.exec, ctx.kv, seq.block_table, seq.context_len, cached.view());
    Tensor latent(DType::kF32, Shape{context, mla.kv_lora_rank});
    for (int64_t pos = 0; pos < context; ++pos) {
      std::memcpy(latent.f32() + pos * mla.kv_lora_rank, cached.f32() + pos * ctx.kv.entry_size,
                  mla.kv_lora_rank * sizeof(float));
    }
    Tensor kv(DType::kF32, Shape{context, heads * (nope + v_dim)});  // per head [k_nope | v]
    ops::linear(ctx.exec, latent.view(), kv_b_proj_.weight, kv_b_proj_.bias, kv.view());
    Tensor keys(DType::kF32, Shape{context, heads, nope + rope_dim});
    Tensor values(DType::kF32, Shape{context, heads, v_dim});
    for (int64_t pos = 0; pos < context; ++pos) {
      const float* rope_key = cached.f32() + pos * ctx.kv.entry_size + mla.kv_lora_rank;
      for (int64_t head = 0; head < heads; ++head) {
        const float* src = kv.f32() + (pos * heads + head) * (nope + v_dim);
        float* key = keys.f32() + (pos * heads + head) * (nope + rope_dim);
        std::memcpy(key, src, nope * sizeof(float));
        std::memcpy(key + nope, rope_key, rope_dim * sizeof(float));
        std::memcpy(values.f32() + (pos * heads + head) * v_dim, src + nope, v_dim * sizeof(float));
      }
    }
    ops::attention_dense(ctx.exec, q.rows(seq.query_begin, seq.num_query), keys.view(), values.view(),
                         config_->attention_scale, attended.rows(seq.query_begin, seq.num_query));
  }
}

void MlaAttention::attend_absorbed(LayerContext& ctx, const TensorView& q, const TensorView& attended) const {
  const MlaConfig& mla = *config_->mla;
  const int64_t tokens = q.dim(0);
  const int64_t heads = num_heads_;
  Tensor q_absorbed(DType::kF32, Shape{tokens, heads, mla.kv_lora_rank + mla.qk_rope_head_dim});
  ops::mla_absorb_q(ctx.exec, q, kv_b_f32_.view(), mla.qk_nope_head_dim, mla.v_head_dim, q_absorbed.view());
  Tensor latent_out(DType::kF32, Shape{tokens, heads, mla.kv_lora_rank});
  ops::mla_attention_absorbed(ctx.exec, q_absorbed.view(), ctx.kv, ctx.batch.sequences, static_cast<int>(heads),
                              config_->attention_scale, latent_out.view());
  ops::mla_project_v(ctx.exec, latent_out.view(), kv_b_f32_.view(), mla.qk_nope_head_dim, mla.v_head_dim, attended);
}

}  // namespace moeserve
