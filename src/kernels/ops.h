// The op contract: every backend implements these with the same shapes and semantics; the CPU
// versions in kernels/cpu/ are the reference (the specification) the others are tested against
// (tests/unit/ops_contract_test.cpp holds the fused CPU ops to the simple ones; tests/gpu's op
// tests hold every CUDA op to its CPU op).
//
// Two levels:
//   1. Tensor ops (namespace ops, TensorView arguments): the readable reference math — embedding,
//      norm, linear, rope, attention, MLA absorption, routing, row gather/scatter.
//   2. Step ops (namespace ops, argument structs over raw pointers into the backend's memory):
//      the shape a fast decoder step takes — a residual add fused into the next norm, split-K
//      partial sums left for their consumer, rope fused with the cache write, paged attention
//      of every row of a batch by position, router → permute → grouped GEMM → combine. The CPU
//      implements each by composing level-1 ops; kernels/cuda implements each as a kernel
//      (namespace cuda, at the end of this file, on a GpuExec's stream).
// Conventions shared by every op:
//   - activations are float32 [rows, features] row-major; "T" is the number of tokens in a batch;
//   - tensor ops read weights in place (F32, F16, BF16); step ops take bf16 weights (uint16_t bits),
//     and on the CPU float32 ones in their `_f32` fields instead (a float32 checkpoint);
//   - "stride" arguments count elements between consecutive rows (tokens), so an op can work on
//     a column slice of a wider row (q/k/v inside one fused qkv row, say).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/context.h"
#include "kernels/paged_kv.h"
#include "tensor/tensor.h"

namespace moeserve::ops {

// ---- 1. Tensor ops ------------------------------------------------------------------------

// out[t, :] = table[ids[t], :].  table [V, H], out [T, H]. ids must be < V (checked by caller).
void embedding(ExecContext& ctx, const TensorView& table, std::span<const int32_t> ids, const TensorView& out);

// out = x / sqrt(mean(x², last axis) + eps) * weight.  x, out [R, D] (may alias), weight [D].
void rms_norm(ExecContext& ctx, const TensorView& x, const TensorView& weight, float eps, const TensorView& out);

// x += y, elementwise. Same shapes.
void add_inplace(ExecContext& ctx, const TensorView& x, const TensorView& y);

// Block-scaled fp8 weights (the DeepSeek-V3 / Qwen3-FP8 checkpoint format): weight is e4m3 and
// w[n, k] = fp8[n, k] · scale[n, (k + offset) / block]. The scales repeat per row (a checkpoint's
// [ceil(N / B), ceil(K / B)] grid expanded over its B rows), so stacked matrices and row blocks
// keep theirs; offset places a tensor-parallel column block that starts inside a scale block.
struct Fp8Scales {
  const float* scale = nullptr;  // [N, ceil((offset + K) / block)]
  int block = 0;
  int offset = 0;  // in [0, block)
  // Emulates an FP8 GEMM's input as the GPU will run it: each row of x quantized to e4m3 per
  // kFp8ActivationGroup columns (scale amax / 448; a power of two at or above it when ue8m0).
  bool quantize_activations = false;
  bool ue8m0 = false;
  // The scales are equal within each aligned block of 128 rows (Projection::scale_row_blocks).
  bool row_blocks = false;
};
inline constexpr int kFp8ActivationGroup = 128;

// out = x · weightᵀ (+ bias).  x [T, K] f32, weight [N, K], bias [N] or null view, out [T, N] f32.
// fp8: the scales of an F8_E4M3 weight (required for one, null otherwise).
void linear(ExecContext& ctx, const TensorView& x, const TensorView& weight, const TensorView& bias,
            const TensorView& out, const Fp8Scales* fp8 = nullptr);

// x [T, K] ← x quantized to e4m3 and back, per row per `group` columns (scale amax / 448, a
// power of two at or above it when ue8m0): what an FP8 GEMM's dynamic activation quantization
// keeps of x.
void quantize_activations_fp8(float* x, int64_t rows, int64_t cols, int group, bool ue8m0);

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

// The gated activation of a SwiGLU MLP, on gate g and up u:
//   default:  silu(g) · u
//   clamped (GPT-OSS's experts): g' = min(g, limit), u' = clamp(u, -limit, limit),
//             (u' + 1) · g' · sigmoid(alpha · g')
struct GluParams {
  bool clamped = false;
  float alpha = 1.702f;
  float limit = 7.0f;
};

// out[t, i] = glu(gate[t, i], up[t, i]) (silu(gate) * up by default).  gate, up, out [T, I] (out
// may alias gate).
void silu_mul(ExecContext& ctx, const TensorView& gate, const TensorView& up, const TensorView& out,
              const GluParams& glu = {});

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
  // GPT-OSS: top-k over the raw logits (+ selection bias), weights = softmax over the k selected
  // logits (sigmoid, groups and renormalize unused).
  bool softmax_after_topk = false;
};
void route(ExecContext& ctx, const TensorView& logits, const TensorView& selection_bias, const RouterParams& params,
           const TensorView& expert_ids, const TensorView& expert_weights);

// ---- 2. Step ops ---------------------------------------------------------------------------

// Fused residual add + RMSNorm over rows of `dim` elements:
//   if add: x[r] += add[r];  then out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight.
// Row r lives at x + (r / rows_per_token) * token_stride + (r % rows_per_token) * dim (per-head
// norms pass rows_per_token = heads). add/out_f32 share x's addressing; out_bf16 is dense
// [rows, dim]. out_f32 may equal x (in-place norm); either output may be null. add may be a
// split-K GEMM's unsummed partial sums (SplitSums, below): add_splits (<= kMaxFusedSplits) slices
// add_split_stride apart.
struct RmsNormArgs {
  float* x = nullptr;
  const float* add = nullptr;
  int add_splits = 1;
  int64_t add_split_stride = 0;
  int rows = 0;
  int dim = 0;
  int rows_per_token = 1;
  int64_t token_stride = 0;          // 0: dim (dense)
  const uint16_t* weight = nullptr;  // [dim] bf16
  const float* weight_f32 = nullptr;  // [dim] float32 in place of weight (the CPU only)
  float eps = 1e-6f;
  float* out_f32 = nullptr;
  uint16_t* out_bf16 = nullptr;
};

// A GEMM result [rows, n] float32 as `splits` slices to add up: value[i] = Σ_s data[s · split_stride
// + i] in split order (split_stride = partial_rows × n); splits == 1: data is the result itself.
struct SplitSums {
  const float* data = nullptr;
  int splits = 1;
  int64_t split_stride = 0;
};
// Consumers add up at most this many slices (their loads all in flight at once).
constexpr int kMaxFusedSplits = 4;

// ops::rope on x + t * token_stride + head * head_stride + rotary_offset, in place (then
// optionally ops::kv_write of each token's entry).
// inv_freq [rotary_dim / 2] float32, positions [tokens].
// A checkpoint's KV cache scales (vLLM's k_scale / v_scale) under --kv-cache-dtype fp8: the cache
// holds e4m3(x / scale), so what a reader decodes is x / scale (the attention ops fold the scale
// back in: AttentionArgs::scale and value_scale, MlaPrefillArgs::cache_scale). {1, 1} is vLLM's
// default. MLA's latent entry [c | k_pe] takes k's.
struct KvScales {
  float k = 1.0f;
  float v = 1.0f;
};

struct RopeArgs {
  float* x = nullptr;
  int tokens = 0;
  int heads = 0;
  int head_stride = 0;
  int64_t token_stride = 0;
  int rotary_offset = 0;
  const float* inv_freq = nullptr;
  int half = 0;  // rotary_dim / 2
  float attention_factor = 1.0f;
  bool interleaved = false;
  const int32_t* positions = nullptr;
  // Optional (cache non-null): then token t's cache entry, entry_size floats at
  // x + t * token_stride + entry_offset (after rotation), goes to cache slot slots[t] — kv_write
  // fused (GQA: the rotated K heads and V; MLA: [c | k_pe]).
  float* cache = nullptr;
  int entry_size = 0;
  int entry_offset = 0;
  const int32_t* slots = nullptr;
  // The cache holds e4m3 bytes (--kv-cache-dtype fp8: each value divided by its scale, rounded to
  // nearest even, saturating) instead of floats, entry_size of them per entry; `cache` then points
  // at bytes. Both backends; the ops that read the cache decode the bytes exactly. Entry elements
  // before cache_value_begin take cache_scales.k, the rest cache_scales.v (GQA: the V heads).
  bool cache_fp8 = false;
  KvScales cache_scales;
  int cache_value_begin = 0;
};

// Causal paged attention for every query row of a batch (prefill, chunked prefill and decode
// alike): row t is at position positions[t] of the sequence whose block table starts at
// block_tables + table_offsets[t], and sees keys [max(0, p - window + 1), p] (sliding_window > 0),
// [floor(p / chunk_size) * chunk_size, p] (chunk_size > 0: Llama 4's chunked local attention), or
// [0, p]. With temperature_floor > 0 (Llama 4's attention-temperature tuning) the row's scores
// are also multiplied by log(floor((p + 1) / temperature_floor) + 1) * temperature_scale + 1
// (transformers scales q by it). With sinks (GPT-OSS), head h's softmax runs over its scores plus
// one more logit sinks[h] that takes probability mass but adds no value:
// p_k = exp(s_k) / (Σ_j exp(s_j) + exp(sinks[h])).
// Query head h reads kv head h / group: key = entry[key_offset + kvh * kv_head_stride, + key_dim),
// value = entry[value_offset + kvh * kv_head_stride, + value_dim). GQA: key_offset 0,
// value_offset num_kv_heads * head_dim, kv_head_stride head_dim. MLA absorbed: one kv head,
// key = the whole [c | k_pe] entry, value = c.
// q [tokens, num_heads, key_dim] at q + t * q_stride; out [tokens, num_heads, value_dim] dense.
struct AttentionArgs {
  const float* q = nullptr;
  int64_t q_stride = 0;
  int tokens = 0;
  int num_heads = 0;
  int group = 1;
  const float* cache = nullptr;
  bool cache_fp8 = false;  // e4m3 bytes, as RopeArgs::cache_fp8
  int block_size = 0;
  int entry_size = 0;
  int key_offset = 0;
  int value_offset = 0;
  int kv_head_stride = 0;
  int key_dim = 0;
  int value_dim = 0;  // CUDA: <= cuda::kMaxValueDim
  float scale = 1.0f;
  float value_scale = 1.0f;  // multiplies the output (an fp8 cache's KvScales::v)
  int sliding_window = 0;
  int chunk_size = 0;
  float temperature_floor = 0.0f;
  float temperature_scale = 0.0f;
  const int32_t* block_tables = nullptr;
  const int32_t* table_offsets = nullptr;
  const int32_t* positions = nullptr;
  float* out = nullptr;
  const float* sinks = nullptr;  // [num_heads] float32 or null
  // Sparse attention (DeepSeek-V3.2; CUDA: the per-head kernel): row t sees only the keys at positions
  // key_positions[t * keys_per_row + i] (i < keys_per_row; -1 entries skipped), which
  // indexer_topk chose among [0, p]; windows and chunks are then unused. Null: every key above.
  const int32_t* key_positions = nullptr;
  int keys_per_row = 0;
};

// DeepSeek-V3.2's lightning indexer: each query row t (at positions[t], its block table at
// block_tables + table_offsets[t]) scores every key j <= p of its sequence
//   I[t, j] = Σ_h weights[t, h] · weight_scale · relu(scale · q[t, h] · k[j])
// with k[j] = cache entry j's [key_offset, key_offset + head_dim) (the index key), and keeps the
// topk largest: out[t] [topk] their positions ascending, then -1 (all of [0, p] when p < topk).
// q [tokens, heads, head_dim] at q + t * q_stride; weights [tokens, heads] at weights + t *
// weights_stride; out [tokens, topk] int32.
struct IndexerArgs {
  const float* q = nullptr;
  int64_t q_stride = 0;
  const float* weights = nullptr;
  int64_t weights_stride = 0;
  int tokens = 0;
  int heads = 0;
  int head_dim = 0;
  float scale = 1.0f;         // 1 / sqrt(head_dim)
  float weight_scale = 1.0f;  // 1 / sqrt(heads)
  int topk = 0;
  const float* cache = nullptr;
  bool cache_fp8 = false;  // e4m3 bytes, as RopeArgs::cache_fp8
  int block_size = 0;
  int entry_size = 0;
  int key_offset = 0;
  const int32_t* block_tables = nullptr;
  const int32_t* table_offsets = nullptr;
  const int32_t* positions = nullptr;
  int32_t* out = nullptr;
};

// LayerNorm (torch.nn.LayerNorm: biased variance) over rows of `dim` floats, row r at
// x + r * stride: out = (x - mean) / sqrt(var + eps) * weight + bias. out may equal x.
// weight, bias [dim] float32.
struct LayerNormArgs {
  const float* x = nullptr;
  int rows = 0;
  int dim = 0;
  int64_t stride = 0;  // 0: dim (dense); out uses the same addressing
  const float* weight = nullptr;
  const float* bias = nullptr;
  float eps = 1e-6f;
  float* out = nullptr;
};

// The MLA head dimensions of mla_absorb_q / mla_project_v. kv_b [H × (dn + dv), r] float32.
// q [T, H, dn + dr] → q_absorbed [T, H, r + dr];  latent [T, H, r] → out [T, H, dv].
struct MlaDims {
  int tokens = 0;
  int heads = 0;
  int nope = 0;   // dn
  int rope = 0;   // dr
  int value = 0;  // dv
  int rank = 0;   // r
};

// MLA attention of one prefill piece in the plain form (mla_prefill.cu): the piece's `count`
// query rows (positions begin .. begin + count - 1, rows first_row .. of q and out) attend to the
// ctx = begin + count latents of its sequence in the paged cache.
struct MlaPrefillArgs {
  MlaDims dims;                          // heads, nope, rope, value, rank
  const float* q = nullptr;              // [T, H, nope + rope], rope applied
  int first_row = 0;
  int count = 0;
  int begin = 0;
  const float* cache = nullptr;          // the layer's [blocks × block_size, entry_size]
  bool cache_fp8 = false;                // e4m3 bytes, as RopeArgs::cache_fp8
  float cache_scale = 1.0f;              // the latents' KvScales::k: gathered values times it
  int entry_size = 0;                    // elements per cache entry, [c | k_pe | ...] (0: rank + rope)
  int block_size = 0;
  const int32_t* block_table = nullptr;  // the sequence's ceil(ctx / block_size) blocks
  const float* kv_b = nullptr;           // [H (nope + value), rank] float32
  float scale = 1.0f;
  int query_tile = 1;                    // queries per score tile (mla_prefill_query_tile)
  float* workspace = nullptr;            // mla_prefill_workspace_floats(dims, ctx, query_tile)
  float* out = nullptr;                  // [T, H, value]
};

// MoE dispatch plan from expert_ids [entries = T × top_k]: offsets [E + 1] (expert e's rows are
// [offsets[e], offsets[e+1]) of the permuted order), positions [entries] (where entry i went),
// source_rows [entries] (the token each permuted row came from). load_counts [E] int64 (or
// null) accumulates rows per expert (the runner's expert load).
struct MoePermuteArgs {
  const int32_t* expert_ids = nullptr;
  int entries = 0;
  int top_k = 1;
  int experts = 0;
  int32_t* offsets = nullptr;
  int32_t* positions = nullptr;
  int32_t* source_rows = nullptr;
  int64_t* load_counts = nullptr;
  // moe_permute_workspace_ints(entries, experts) ints: prefill-sized plans (more than
  // kMoePermuteOneBlockEntries entries) then run over many blocks; null keeps one block.
  int32_t* workspace = nullptr;
};

// Llama 4's input-scaled experts (MoeConfig::scale_expert_input): each routed expert reads its
// token's row scaled by the routing weight, and the combine then weighs it 1. From the plan of
// moe_permute (positions [entries]: where entry e went):
//   x_scaled[e] = x[e / top_k] · weights[e]   (x [tokens, hidden], x_scaled [entries, hidden])
//   entry_rows[positions[e]] = e               (the row of x_scaled permuted row i reads)
//   weights[e] = weights[e] != 0 ? 1 : 0        (0 stays 0: an entry of another EP rank)
struct ScaleExpertInputsArgs {
  const float* x = nullptr;
  int hidden = 0;
  int entries = 0;
  int top_k = 1;
  const int32_t* positions = nullptr;
  float* weights = nullptr;
  float* x_scaled = nullptr;
  int32_t* entry_rows = nullptr;
};

// Weighted combine (ops::scatter_add_rows over all experts, then the shared expert):
//   out[t] = Σ_k weights[t, k] · expert_out[positions[t, k]] + s_t · shared_out[t]
// with s_t = sigmoid(shared_gate_logit[t]) when given, else 1; shared_out may be null.
struct MoeCombineArgs {
  const float* expert_out = nullptr;   // [T × top_k, hidden] in permuted order
  int expert_splits = 1;               // expert_out as SplitSums slices (<= kMaxFusedSplits)
  int64_t expert_split_stride = 0;
  const int32_t* positions = nullptr;  // [T, top_k]
  // [T, top_k]; an entry of weight 0 adds nothing, whatever its expert_out row holds (expert
  // parallelism leaves the rows of other ranks' slots unwritten).
  const float* weights = nullptr;
  int tokens = 0;
  int top_k = 0;
  int hidden = 0;
  const float* shared_out = nullptr;         // [T, hidden]
  const float* shared_gate_logit = nullptr;  // [T]
  float* out = nullptr;                      // [T, hidden]
  // Optional (residual non-null, out unused): the residual add + RMSNorm that follows, fused —
  // residual[t] += the combined row, then normed[t] = residual[t] / rms · norm_weight (as rms_norm).
  float* residual = nullptr;                 // [T, hidden]
  const uint16_t* norm_weight = nullptr;     // [hidden] bf16
  const float* norm_weight_f32 = nullptr;    // [hidden] float32 in place of norm_weight (the CPU only)
  float eps = 1e-6f;
  float* normed_f32 = nullptr;               // [T, hidden] or null
  uint16_t* normed_bf16 = nullptr;           // [T, hidden] or null
};

// GEMM on float32 activations and bf16 weights, optionally grouped (one weight matrix per expert):
//   group g's input rows [offsets[g], offsets[g+1]) of x (all M rows when offsets is null)
//   out[r, n] = Σ_k x[r, k] · W_g[n, k] (+ bias[n])                      (swiglu = false)
//   out[r, n] = glu(Σ x·W_g[n] (+ b_g[n]), Σ x·W_g[n + N] (+ b_g[n + N]))  W_g [2N, K]  (swiglu = true)
// Groups whose rows are empty cost nothing (the experts no token chose).
// x [rows, K] dense; W_g = weight + g * group_stride ([N or 2N, K] bf16); out [rows, N] dense;
// b_g = bias (or bias_f32) + g * bias_group_stride ([N or 2N]).
struct GemmArgs {
  const float* x = nullptr;
  int rows = 0;  // total rows (upper bound of any group's row count)
  int k = 0;
  int n = 0;
  const uint16_t* weight = nullptr;
  int64_t group_stride = 0;
  const int32_t* offsets = nullptr;  // [groups + 1] in the backend's memory, or null (one group)
  int groups = 1;
  // Grouped: rows of x over all groups (offsets[groups]), or 0 when unknown. small_gemm then
  // launches blocks only for as many groups as can have rows; mma_gemm sizes its split K by it.
  int total_rows = 0;
  const uint16_t* bias = nullptr;  // [n] bf16 or null
  const float* bias_f32 = nullptr;  // [n] float32 in place of bias
  int64_t bias_group_stride = 0;    // group g's bias at bias(_f32) + g * bias_group_stride
  bool swiglu = false;
  GluParams glu;  // the activation of swiglu
  float* out = nullptr;
  // Row r reads x[x_rows[r]] instead of x[r] (the MoE gather fused; CUDA: small_gemm only); null: x[r].
  const int32_t* x_rows = nullptr;
  // fp8 weights in place of `weight` (the CPU; CUDA: small_gemm, mma_gemm):
  // [groups ×] [N_w, K] e4m3 (group_stride apart), scaled by fp8.scale (scale_group_stride apart).
  const uint8_t* weight_fp8 = nullptr;
  Fp8Scales fp8;
  int64_t scale_group_stride = 0;
  // float32 weights in place of `weight` (the CPU only; a float32 checkpoint): [groups ×] [N_w, K].
  const float* weight_f32 = nullptr;
  // MXFP4 weights in place of `weight` (GPT-OSS's experts; CUDA: small_gemm, mma_gemm): [groups ×]
  // [N_w, K / 2] bytes (group_stride / 2 apart; two e2m1 values a byte, the even column in the
  // low nibble), scaled by mx_scale [groups ×] [N_w, K / 32] e8m0 (group_stride / 32 apart).
  // K % 32 == 0.
  const uint8_t* weight_mxfp4 = nullptr;
  const uint8_t* mx_scale = nullptr;
};

// MXFP4 (OCP microscaling fp4, GPT-OSS's experts) → bf16, exactly (every value is a bf16):
// out[r, c] = e2m1(blocks[r, c / 2] nibble c % 2) · 2^(scales[r, c / 32] − 127).
// blocks [rows, cols / 2], scales [rows, cols / 32], out [rows, cols]; cols % 32 == 0. An e8m0
// of 0xFF (NaN) gives NaN.
void dequantize_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, uint16_t* out);

// CPU step ops (kernels/cpu/): the specification of the CUDA ops of the same name below.
// out[t, :] = table[ids[t], :].  table [vocab, hidden] bf16, out [tokens, hidden].
void embedding(ExecContext& ctx, const uint16_t* table, int hidden, const int32_t* ids, int tokens, float* out);
// The same from a float32 table [vocab, hidden].
void embedding(ExecContext& ctx, const float* table, int hidden, const int32_t* ids, int tokens, float* out);
void rms_norm(ExecContext& ctx, const RmsNormArgs& args);
void layer_norm(ExecContext& ctx, const LayerNormArgs& args);
void rope(ExecContext& ctx, const RopeArgs& args);
// cache entry slots[t] (= block * block_size + offset) ← src[t * src_stride, + entry_size).
// cache [num_blocks * block_size, entry_size] float32, or e4m3 bytes when cache_fp8 (each value
// divided by its scale as RopeArgs', then f32_to_f8e4m3: nearest even, saturating at ±448;
// `cache` then points at bytes).
void kv_write(ExecContext& ctx, float* cache, int entry_size, const int32_t* slots, int tokens, const float* src,
              int64_t src_stride, bool cache_fp8 = false, const KvScales& scales = {}, int value_begin = 0);
void paged_attention(ExecContext& ctx, const AttentionArgs& args);
void indexer_topk(ExecContext& ctx, const IndexerArgs& args);
// mla_absorb_q / mla_project_v above on raw pointers. kv_b [H × (dn + dv), r] float32.
void mla_absorb_q(ExecContext& ctx, const MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed);
void mla_project_v(ExecContext& ctx, const MlaDims& dims, const float* latent, const float* kv_b, float* out);
// (args.workspace and args.query_tile are the CUDA kernel's; the CPU ignores them.)
void mla_prefill_attention(ExecContext& ctx, const MlaPrefillArgs& args);
// route above on raw pointers: logits [T, E], selection_bias [E] or null → expert_ids, expert_weights [T, top_k].
void route(ExecContext& ctx, const float* logits, const float* selection_bias, int tokens, int experts,
           const RouterParams& params, int32_t* expert_ids, float* expert_weights);
// (args.workspace is the CUDA kernel's; the CPU ignores it.)
void moe_permute(ExecContext& ctx, const MoePermuteArgs& args);
// out[i, :] = x[rows[i], :], to float32 or bf16 (either may be null). x [*, width].
void gather_rows(ExecContext& ctx, const float* x, int width, const int32_t* rows, int count, float* out_f32,
                 uint16_t* out_bf16);
void scale_expert_inputs(ExecContext& ctx, const ScaleExpertInputsArgs& args);
void moe_combine(ExecContext& ctx, const MoeCombineArgs& args);
void gemm(ExecContext& ctx, const GemmArgs& args);
// out[r, i] = glu(gate_up[r, i], gate_up[r, I + i]) for gate_up [rows, 2I]; out [rows, I] f32 or bf16.
void silu_mul(ExecContext& ctx, const float* gate_up, int rows, int intermediate, float* out_f32,
              uint16_t* out_bf16, const GluParams& glu = {});
// out[r] = the first index of the largest value of x[r, :] (x [rows, width]; greedy sampling).
void argmax_rows(ExecContext& ctx, const float* x, int rows, int64_t width, int32_t* out);

}  // namespace moeserve::ops

// ---- The CUDA step ops (kernels/cuda/*.cu) ---------------------------------------------------
// The same contract on device pointers, queued on the stream in GpuExec (nothing here
// synchronises). Plain C++ so callers need no CUDA headers; declared only, so a CPU-only build
// never references them.
namespace moeserve::cuda {

using ops::AttentionArgs;
using ops::GemmArgs;
using ops::IndexerArgs;
using ops::LayerNormArgs;
using ops::kMaxFusedSplits;
using ops::MlaDims;
using ops::MlaPrefillArgs;
using ops::MoeCombineArgs;
using ops::MoePermuteArgs;
using ops::RmsNormArgs;
using ops::RopeArgs;
using ops::SplitSums;

// The stream and cuBLAS handle every op is queued on (cudaStream_t / cublasHandle_t).
struct GpuExec {
  void* stream = nullptr;
  void* blas = nullptr;
};

// ops::embedding (step form) on the device.
void embedding(const GpuExec& exec, const uint16_t* table, int hidden, const int32_t* ids, int tokens, float* out);

// ops::rms_norm on the device.
void rms_norm(const GpuExec& exec, const RmsNormArgs& args);

// ops::layer_norm on the device.
void layer_norm(const GpuExec& exec, const LayerNormArgs& args);

// ops::indexer_topk on the device (topk <= kMaxIndexTopk: DeepSeek-V3.2's 2048).
constexpr int kMaxIndexTopk = 2048;
void indexer_topk(const GpuExec& exec, const IndexerArgs& args);

// ops::rope on the device (with the fused cache write).
void rope(const GpuExec& exec, const RopeArgs& args);

// ops::kv_write (step form) on the device.
void kv_write(const GpuExec& exec, float* cache, int entry_size, const int32_t* slots, int tokens, const float* src,
              int64_t src_stride);

constexpr int kMaxValueDim = 512;
constexpr int kMaxKeyDim = 1024;
// ops::paged_attention on the device.
void paged_attention(const GpuExec& exec, const AttentionArgs& args);

// The same attention for prefill-sized batches of GQA rows: query_tiles [num_tiles × 2] =
// (first row, rows) pairs, each at most tile_rows consecutive rows of one sequence, covering
// every row once; a block takes a tile × one kv head (tile rows × group queries that share each
// K/V tile it stages).
// A block's queries (tile rows × group) at most: on tensor cores, on CUDA cores.
constexpr int kPrefillMmaQueries = 128;
constexpr int kPrefillQueries = 64;
// Rows per tile that fill a block of the kernel a head shape takes, at least 1.
int prefill_tile_rows(int head_dim, int group);
// On tensor cores (key_dim == value_dim, a multiple of 16 and <= 128, group × tile_rows <= 128,
// 16-byte aligned cache rows): Q, K, P and V as bf16 hi + lo halves when split_bf16
// (float32-like), or rounded to bf16.
bool prefill_attention_mma_supported(const AttentionArgs& args, int tile_rows);
void paged_attention_prefill_mma(const GpuExec& exec, const AttentionArgs& args, const int32_t* query_tiles,
                                 int num_tiles, int tile_rows, bool split_bf16);
// On CUDA cores in float32 (key_dim == value_dim <= 128, a multiple of 4, group × tile_rows <= 64).
bool prefill_attention_supported(const AttentionArgs& args, int tile_rows);
void paged_attention_prefill(const GpuExec& exec, const AttentionArgs& args, const int32_t* query_tiles, int num_tiles,
                             int tile_rows);

// MLA's absorbed attention (one latent kv head: group == num_heads, key = the entry, value = its
// first value_dim columns), 16 query heads a block reading each latent row once: what
// paged_attention runs for such args (without sinks, windows, chunks or temperature, heads a
// multiple of 16, float4 rows) once rows × heads / 16 make 32 blocks or more.
bool mla_attention_takes(const AttentionArgs& args);
void paged_attention_mla(const GpuExec& exec, const AttentionArgs& args);

// ops::mla_absorb_q / ops::mla_project_v on the device.
void mla_absorb_q(const GpuExec& exec, const MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed);
void mla_project_v(const GpuExec& exec, const MlaDims& dims, const float* latent, const float* kv_b, float* out);

// ops::mla_prefill_attention: the piece's scores in tiles of query_tile queries, in workspace;
// its GEMMs in TF32 with tf32 (the bf16 mode), else in float32.
void mla_prefill_attention(const GpuExec& exec, const MlaPrefillArgs& args, bool tf32);
size_t mla_prefill_workspace_floats(const MlaDims& dims, int ctx, int query_tile);
// Queries per score tile so that the scores (H × tile × ctx floats) stay within score_floats.
int mla_prefill_query_tile(const MlaDims& dims, int count, int ctx, size_t score_floats);

// ops::route on the device. logits [T, E], selection_bias [E] float32 or null;
// expert_ids [T, top_k] int32, expert_weights [T, top_k] float32. E <= kMaxExperts.
constexpr int kMaxExperts = 512;
void route(const GpuExec& exec, const float* logits, const float* selection_bias, int tokens, int experts,
           const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights);

// ops::moe_permute on the device.
void moe_permute(const GpuExec& exec, const MoePermuteArgs& args);
// Plans of up to this many entries run in one block (every decode step: CUDA-graph friendly, no
// workspace); larger ones count, scan and place over chunks of kMoePermuteChunk entries.
constexpr int kMoePermuteOneBlockEntries = 4096;
constexpr int kMoePermuteChunk = 256;
size_t moe_permute_workspace_ints(int entries, int experts);

// ops::gather_rows (step form) on the device.
void gather_rows(const GpuExec& exec, const float* x, int width, const int32_t* rows, int count, float* out_f32,
                 uint16_t* out_bf16);

// ops::scale_expert_inputs on the device.
void scale_expert_inputs(const GpuExec& exec, const ops::ScaleExpertInputsArgs& args);

// ops::moe_combine on the device (top_k <= kMaxCombineTopK).
constexpr int kMaxCombineTopK = 64;
void moe_combine(const GpuExec& exec, const MoeCombineArgs& args);

// ops::gemm on CUDA cores for decode-sized row counts (small_gemm.cu): each weight row streams once
// per tile of kSmallTile rows; also reads x through x_rows (the MoE gather fused).
constexpr int kSmallTile = 16;
// workspace (no SwiGLU; grouped: total_rows set): room for small_gemm_workspace_floats(args)
// floats lets a grid with too few blocks for the GPU split K, as mma_gemm does; null runs it unsplit.
size_t small_gemm_workspace_floats(const GemmArgs& args);
void small_gemm(const GpuExec& exec, const GemmArgs& args, float* workspace = nullptr);

// small_gemm whose split-K partial sums (no bias: args.bias must be null) are left in workspace
// for the consumer to add (rms_norm's add, moe_combine's expert rows: one launch fewer); when it
// does not split, or splits more than kMaxFusedSplits ways, args.out holds the result.
SplitSums small_gemm_unsummed(const GpuExec& exec, const GemmArgs& args, float* workspace);

// The same contract on tensor cores (mma.sync; see mma_gemm.cu), for groups of more rows than
// small_gemm's CUDA-core tiles suit: each weight byte comes from HBM once (from L2 for every further 16 rows of a group).
// split: activations as bf16 hi + lo halves (float32-like); otherwise rounded to bf16. Needs K % 8 == 0.
// workspace (no SwiGLU; grouped: total_rows set): room for mma_gemm_workspace_floats(args)
// floats lets a GEMM with too few blocks for the GPU split K over more blocks (the partial sums
// are added in a fixed order, so results are deterministic); null runs it unsplit.
bool mma_gemm_supported(int k);
// FP8 weights (args.weight_fp8): exact e4m3 → bf16 in registers, each 64-K chunk's sums times its
// row's block scale (W8A16); needs K % 16 == 0, scale blocks and offset multiples of 64. With
// fp8.quantize_activations (not split: the bf16 mode), W8A8 on FP8 tensor cores: each row's 128-K
// groups of x quantized as quantize_fp8_rows does, inside the kernel; needs K % 128 == 0 and
// scale blocks of 128 at offset 0.
bool mma_gemm_supports_fp8(int k, const ops::Fp8Scales& fp8);
size_t mma_gemm_workspace_floats(const GemmArgs& args);
void mma_gemm(const GpuExec& exec, const GemmArgs& args, bool split, float* workspace = nullptr);

// cuBLAS: out [M, N] f32 = x [M, K] bf16 · W [N, K]ᵀ bf16 (+ bias [N] bf16), fp32 accumulate;
// accumulate: out += instead of out = (for the low half of a split activation).
void gemm_bf16(const GpuExec& exec, const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int m, int n,
               int k, float* out, bool accumulate = false);
// The same product rounded to bf16: out [M, N] bf16.
void gemm_bf16(const GpuExec& exec, const uint16_t* x, const uint16_t* weight, int m, int n, int k, uint16_t* out);
// Dynamic FP8 activation quantization as ops::quantize_activations_fp8 rounds: x [rows, K] (x_f32
// or x_bf16; K % kFp8Group == 0) → out [padded_rows, K] e4m3 codes and scales [K / kFp8Group,
// padded_rows] float32 (group g of row r at g · padded_rows + r); rows [rows, padded_rows) are
// zeros at scale 1. gate_up: x_bf16 is a SwiGLU's [gate | up] [rows, 2K] and the rows quantized
// are silu(gate) · up rounded to bf16 (what silu_mul writes).
constexpr int kFp8Group = ops::kFp8ActivationGroup;
void quantize_fp8_rows(const GpuExec& exec, const float* x_f32, const uint16_t* x_bf16, int64_t rows,
                       int64_t padded_rows, int k, bool ue8m0, uint8_t* out, float* scales, bool gate_up = false);
// W8A8 on FP8 tensor cores (cuBLASLt, block scales on both operands): out [M, N] (out_f32 or
// out_bf16) = quantize_fp8_rows(x) · W [N, K]ᵀ, W e4m3 with its scales as ops::Fp8Scales (blocks
// of kFp8Group columns at offset 0; N % 16 == 0). workspace: linear_fp8_workspace_bytes(M, N, K).
// False when cuBLASLt has no kernel for the product (the caller multiplies another way).
// out_spare_rows: rows past M of out the call may overwrite (with kLinearFp8SpareRows, one product
// does it all; see gemm_fp8.cu). x_gate_up: x_bf16 is [M, 2K] [gate | up] and the product's input
// silu(gate) · up (quantize_fp8_rows' gate_up).
constexpr int kLinearFp8SpareRows = 3;
bool linear_fp8_supported(int n, int k, const ops::Fp8Scales& w);
size_t linear_fp8_workspace_bytes(int m, int n, int k);
bool linear_fp8(const GpuExec& exec, const float* x_f32, const uint16_t* x_bf16, int m, const uint8_t* w,
                const ops::Fp8Scales& w_scales, int n, int k, float* out_f32, uint16_t* out_bf16, void* workspace,
                int out_spare_rows = 0, bool x_gate_up = false);
// cuBLAS in float32 (no TF32): out [M, N] = x [M, K] · W [N, K]ᵀ (+ bias [N]), all float32.
void gemm_f32(const GpuExec& exec, const float* x, const float* weight, int m, int n, int k, float* out,
              const float* bias = nullptr);

// out[r, i] = glu(gate_up[r, i], gate_up[r, I + i]) for gate_up [rows, 2I]; out [rows, I] f32 or bf16.
void silu_mul(const GpuExec& exec, const float* gate_up, int rows, int intermediate, float* out_f32,
              uint16_t* out_bf16, const ops::GluParams& glu = {});
// The same from a bf16 gate_up [rows, 2I] to bf16.
void silu_mul(const GpuExec& exec, const uint16_t* gate_up_bf16, int rows, int intermediate, uint16_t* out_bf16,
              const ops::GluParams& glu = {});

// out[r] = the first index of the largest value of x[r, :] (x [rows, width]; greedy sampling).
void argmax_rows(const GpuExec& exec, const float* x, int rows, int64_t width, int32_t* out);

// Sampling on the device: runtime/sampler.h's apply_edits + sample_with_uniform for each chosen
// row. choices [rows] and edits on the device; row choices[i].row of logits [*, vocab] is read
// (not modified) and out[choices[i].row] = its token. The edits of choice i are
// edits[edit_begin, edit_end), distinct tokens. workspace: sample_rows_workspace_bytes(rows,
// vocab) bytes (or more) for a call of up to `rows` choices. A choice with logprobs >= 0 (and no
// edits) also gets logprobs_out[i]: runtime/logprobs.h's compute_logprobs of its row for the
// picked token and the top min(logprobs, kMaxSampleLogprobs).
struct SampleChoice {  // one row's TokenChoice
  int32_t row = 0;
  int32_t top_k = 0;
  float temperature = 0.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  double uniform = 0.0;
  int32_t edit_begin = 0;
  int32_t edit_end = 0;
  int32_t logprobs = -1;
};
constexpr int kMaxSampleLogprobs = 20;  // vLLM's default --max-logprobs
struct SampleLogprobs {
  float logprob = 0.0f;  // of the picked token
  int32_t top_count = 0;
  int32_t top_ids[kMaxSampleLogprobs] = {};
  float top_logprobs[kMaxSampleLogprobs] = {};
};
struct SampleEdit {  // runtime/sampler.h's LogitEdit
  int32_t token = 0;
  int32_t output_count = 0;
  int32_t seen = 0;
  int32_t masked = 0;
};
size_t sample_rows_workspace_bytes(int rows, int64_t vocab);
void sample_rows(const GpuExec& exec, const float* logits, int64_t vocab, const SampleChoice* choices, int rows,
                 const SampleEdit* edits, void* workspace, size_t workspace_bytes, int32_t* out,
                 SampleLogprobs* logprobs_out = nullptr);

// Casts: float32 → bf16 (round to nearest even), bf16 → float32.
void to_bf16(const GpuExec& exec, const float* x, int64_t count, uint16_t* out);
void to_f32(const GpuExec& exec, const uint16_t* x, int64_t count, float* out);
// Block-scaled FP8 weights [rows, cols] (scales as ops::Fp8Scales) → bf16(fp8 · scale): what
// cuBLAS multiplies for prefill-sized GEMMs. cols, the block and the offset multiples of 16.
void fp8_to_bf16(const GpuExec& exec, const uint8_t* fp8, const ops::Fp8Scales& scales, int64_t rows, int cols,
                 uint16_t* out);
// x ≈ hi + lo with hi = bf16(x), lo = bf16(x − hi): two bf16 GEMMs then carry ~16 bits of each
// activation's mantissa (the precise prefill mode).
void to_bf16_split(const GpuExec& exec, const float* x, int64_t count, uint16_t* hi, uint16_t* lo);

// Random bf16 weights on the device (--load-format dummy without a host copy): each element
// normal(0, stddev) from a counter-based hash of (seed, index); stddev 0 fills `constant`.
void fill_random_bf16(const GpuExec& exec, uint16_t* out, int64_t count, uint64_t seed, float stddev, float constant);
// Uniform random bytes from the same hash (only mask's bits set), or `constant` where random is
// false (MXFP4 blocks and scales, FP8 codes of --load-format dummy).
void fill_random_bytes(const GpuExec& exec, uint8_t* out, int64_t count, uint64_t seed, bool random, uint8_t constant,
                       uint8_t mask = 0xff);

}  // namespace moeserve::cuda
