// The op contract: every backend implements these with the same shapes and semantics; the CPU
// versions in kernels/cpu/ are the reference (the specification) the others are tested against.
// Activations are float32 [rows, features] row-major; weights may be F32, F16, BF16 (or F8 later)
// and are read in place. "T" is the number of tokens in the batch.
#pragma once

#include <span>

#include "kernels/context.h"
#include "kernels/paged_kv.h"
#include "tensor/tensor.h"

namespace moeserve::ops {

// out[t, :] = table[ids[t], :].  table [V, H], out [T, H]. ids must be < V (checked by caller).
void embedding(ExecContext& ctx, const TensorView& table, std::span<const int32_t> ids, const TensorView& out);

// out = x / sqrt(mean(x², last axis) + eps) * weight.  x, out [R, D] (may alias), weight [D].
void rms_norm(ExecContext& ctx, const TensorView& x, const TensorView& weight, float eps, const TensorView& out);

// x += y, elementwise. Same shapes.
void add_inplace(ExecContext& ctx, const TensorView& x, const TensorView& y);

// out = x · weightᵀ (+ bias).  x [T, K] f32, weight [N, K], bias [N] or null view, out [T, N] f32.
void linear(ExecContext& ctx, const TensorView& x, const TensorView& weight, const TensorView& bias,
            const TensorView& out);

// Rotates the first rotary_dim dims of each head in place.  x [T, heads, head_stride],
// positions [T], inv_freq [rotary_dim / 2] (float32), cos/sin scaled by attention_factor.
// interleaved: pairs (2i, 2i+1); otherwise halves (i, i + rotary_dim/2).
struct RopeParams {
  std::span<const float> inv_freq;
  int rotary_offset = 0;  // rotate dims [offset, offset + rotary_dim) of each head
  float attention_factor = 1.0f;
  bool interleaved = false;
};
void rope(ExecContext& ctx, const TensorView& x, std::span<const int32_t> positions, const RopeParams& params);

// Writes one entry per token into the paged cache: entry[0:a) = first[t], entry[a:a+b) = second[t].
// first [T, a], second [T, b], with a + b == kv.entry_size.
void kv_write(ExecContext& ctx, const PagedKvLayer& kv, std::span<const SequenceView> sequences,
              const TensorView& first, const TensorView& second);

// Reads positions [0, context_len) of one sequence back out of the cache: out [context_len, entry_size].
void kv_gather(ExecContext& ctx, const PagedKvLayer& kv, std::span<const int32_t> block_table, int context_len,
               const TensorView& out);

// Causal GQA attention over the paged cache (which already holds this batch's K/V).
// q [T, num_heads, head_dim], out [T, num_heads, head_dim]. sliding_window 0 = unlimited.
struct AttentionParams {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;
  int sliding_window = 0;
};
void attention(ExecContext& ctx, const TensorView& q, const PagedKvLayer& kv, std::span<const SequenceView> sequences,
               const AttentionParams& params, const TensorView& out);

// MLA attention in the weight-absorbed form (MQA over the cached latent).
// q_absorbed [T, H, r + dr] = [q_nope·W_UK^h | q_pe], out_latent [T, H, r] = Σ p · c.
// The caller projects out_latent through W_UV. Scores use scale.
void mla_attention_absorbed(ExecContext& ctx, const TensorView& q_absorbed, const PagedKvLayer& kv,
                            std::span<const SequenceView> sequences, int num_heads, float scale,
                            const TensorView& out_latent);

// Plain causal attention on contiguous tensors (no cache), for MLA's naive form.
// q [Tq, H, Dqk], k [Tk, H, Dqk], v [Tk, H, Dv], out [Tq, H, Dv]; query i sits at key
// position Tk - Tq + i and sees keys 0..that position.
void attention_dense(ExecContext& ctx, const TensorView& q, const TensorView& k, const TensorView& v, float scale,
                     const TensorView& out);

// MLA weight absorption. kv_b [H × (dn + dv), r] float32 (kv_b_proj.weight).
// q_absorbed[t, h] = [q[t, h, :dn] · W_UK^h | q[t, h, dn:]],  q [T, H, dn + dr] → [T, H, r + dr].
void mla_absorb_q(ExecContext& ctx, const TensorView& q, const TensorView& kv_b, int qk_nope_head_dim,
                  int v_head_dim, const TensorView& q_absorbed);
// out[t, h] = W_UV^h · latent[t, h].  latent [T, H, r] → out [T, H, dv].
void mla_project_v(ExecContext& ctx, const TensorView& latent, const TensorView& kv_b, int qk_nope_head_dim,
                   int v_head_dim, const TensorView& out);

// out[i, :] = x[rows[i], :].  x [T, H], out [rows.size(), H].
void gather_rows(ExecContext& ctx, const TensorView& x, std::span<const int32_t> rows, const TensorView& out);
// out[rows[i], :] += weights[i] * y[i, :].  Rows may not repeat within one call.
void scatter_add_rows(ExecContext& ctx, const TensorView& y, std::span<const int32_t> rows,
                      std::span<const float> weights, const TensorView& out);

// out[t, i] = silu(gate[t, i]) * up[t, i].  gate, up, out [T, I] (out may alias gate).
void silu_mul(ExecContext& ctx, const TensorView& gate, const TensorView& up, const TensorView& out);

// MoE routing: from router logits [T, E] (and the optional selection bias [E]) choose top_k
// experts per token and their weights (see RouterParams for the variants).
// expert_ids [T, top_k] (I32), expert_weights [T, top_k] (F32).
struct RouterParams {
  int top_k = 0;
  bool sigmoid = false;        // score = sigmoid(logit), else softmax over all experts
  int num_groups = 1;          // group-limited selection when > 1
  int topk_groups = 1;
  bool group_score_top2_sum = false;  // group score = sum of its top-2 (V3), else its max (V2)
  bool renormalize = false;    // weights /= sum(weights)
  float scaling_factor = 1.0f;
};
void route(ExecContext& ctx, const TensorView& logits, const TensorView& selection_bias, const RouterParams& params,
           const TensorView& expert_ids, const TensorView& expert_weights);

}  // namespace moeserve::ops
