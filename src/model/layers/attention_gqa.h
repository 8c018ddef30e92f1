// Grouped-query attention (Llama, Mistral, Mixtral, Qwen2/3 and their MoE versions):
// q/k/v projections (optional bias), optional per-head q/k RMSNorm (Qwen3), RoPE, write K/V to
// the paged cache, causal attention, o_proj. KV entry per token: 2 × num_kv_heads × head_dim.
// Tensor parallel: each rank holds num_heads / tp query heads and their KV heads (a block of
// num_kv_heads / tp, or one replicated head when num_kv_heads < tp), q/k/v column-parallel
// (views), o_proj row-parallel (a copied column block) whose partial sums are all-reduced.
#pragma once

#include "model/sharded_weights.h"
#include "model/config.h"
#include "model/layers/layer_context.h"
#include "model/layers/rope.h"

namespace moeserve {

class GqaAttention {
 public:
  static Result<GqaAttention> load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                                   const Partition& tp = {});

  // x [T, hidden] (normalised input) → out [T, hidden].
  void forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const;

 private:
  const ModelConfig* config_ = nullptr;
  int num_heads_ = 0;     // this rank's query heads (Hq)
  int num_kv_heads_ = 0;  // this rank's KV heads (Hkv)
  RopeTable rope_;
  LinearWeights q_proj_, k_proj_, v_proj_, o_proj_;  // q [Hq·D, hidden], k/v [Hkv·D, hidden], o [hidden, Hq·D]
  TensorView q_norm_, k_norm_;                       // [D] each (Qwen3), else null
};

}  // namespace moeserve
