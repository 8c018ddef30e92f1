// DeepSeek multi-head latent attention (V2/V3, Kimi K2). Query: q_proj, or q_a_proj → RMSNorm
// → q_b_proj (q-LoRA). Key/value: kv_a_proj_with_mqa gives the latent c (RMSNorm'd) and one
// shared rope key k_pe; only [c | k_pe] is cached (kv_lora_rank + qk_rope_head_dim floats per
// token). Two equal forms: naive (up-project c through kv_b_proj to per-head K/V) and absorbed
// (fold W_UK into the query and W_UV into the output: MQA over the latent). Tensor parallel:
// each rank holds num_heads / tp heads of the up-projections (q_proj/q_b_proj, kv_b_proj as row
// blocks) and o_proj's matching column block (partial sums all-reduced); the latent cache and
// the down-projections are replicated, as in vLLM.
#pragma once

#include <string>

#include "model/sharded_weights.h"
#include "model/config.h"
#include "model/layers/layer_context.h"
#include "model/layers/rope.h"

namespace moeserve {

// kAuto: absorbed when every sequence decodes one token, naive otherwise (as vLLM does).
enum class MlaMode { kAuto, kNaive, kAbsorbed };

class MlaAttention {
 public:
  static Result<MlaAttention> load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                                   MlaMode mode, const Partition& tp = {});

  // x [T, hidden] (normalised input) → out [T, hidden].
  void forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const;

 private:
  void compute_query(LayerContext& ctx, const TensorView& x, const TensorView& q) const;
  void attend_naive(LayerContext& ctx, const TensorView& q, const TensorView& attended) const;
  void attend_absorbed(LayerContext& ctx, const TensorView& q, const TensorView& attended) const;

  const ModelConfig* config_ = nullptr;
  MlaMode mode_ = MlaMode::kAuto;
  int num_heads_ = 0;  // this rank's heads (H below)
  RopeTable rope_;
  LinearWeights q_proj_;            // [H·(dn+dr), hidden] when q_lora_rank == 0
  LinearWeights q_a_proj_;          // [rq, hidden]
  TensorView q_a_norm_;             // [rq]
  LinearWeights q_b_proj_;          // [H·(dn+dr), rq]
  LinearWeights kv_a_proj_;         // [r + dr, hidden]
  TensorView kv_a_norm_;            // [r]
  LinearWeights kv_b_proj_;         // [H·(dn+dv), r]
  LinearWeights o_proj_;            // [hidden, H·dv]
  Tensor kv_b_f32_;                 // kv_b_proj in float32 for the absorbed form [H·(dn+dv), r]
};

}  // namespace moeserve
