// Grouped-query attention (Llama, Mistral, Mixtral, Qwen2/3 and their MoE versions):
// q/k/v projections (optional bias), optional per-head q/k RMSNorm (Qwen3), RoPE, write K/V to
// the paged cache, causal attention, o_proj. KV entry per token: 2 × num_kv_heads × head_dim.
#pragma once

#include <string>

#include "loader/weight_source.h"
#include "model/config.h"
#include "model/layers/layer_context.h"
#include "model/layers/rope.h"

namespace moeserve {

class GqaAttention {
 public:
  static Result<GqaAttention> load(const ModelConfig& config, const WeightSource& weights, const std::string& prefix);
  static int kv_entry_size(const ModelConfig& config) { return 2 * config.num_kv_heads * config.head_dim; }

  // x [T, hidden] (normalised input) → out [T, hidden].
  void forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const;

 private:
  const ModelConfig* config_ = nullptr;
  RopeTable rope_;
  LinearWeights q_proj_, k_proj_, v_proj_, o_proj_;  // q [Hq·D, hidden], k/v [Hkv·D, hidden], o [hidden, Hq·D]
  TensorView q_norm_, k_norm_;                       // [D] each (Qwen3), else null
};

}  // namespace moeserve
