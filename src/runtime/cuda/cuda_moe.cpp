// CudaModel's MoE block: router GEMM → route (top-k) → permute (rows grouped by expert, on the
// device) → experts → weighted combine with the shared expert (and the residual add + norm
// that follows the block). Batches of up to kMaxMmaRows tokens run the experts as two grouped
// streaming GEMMs (gate/up with SwiGLU fused, then down; small_gemm up to kMaxSmallGroupedRows
// tokens, reading each token's row through the permutation, mma_gemm beyond) that read the
// expert offsets on the device, so the step never waits for the host (CUDA-graph safe) and
// experts no token chose cost nothing. Prefill-sized batches copy the offsets back once per
// layer and run each chosen expert through cuBLAS.
#include <optional>
#include <vector>

#include "runtime/cuda/cuda_model.h"

namespace moeserve::cuda {

void CudaModel::moe(Step& step, int layer_idx, Act x, float* out, const RmsNormArgs* then) const {
  const DeviceMoe& w = layers_[layer_idx].moe;
  const int tokens = step.in.tokens;
  const int experts = w.num_experts;
  const int top_k = w.router_params.top_k;
  const int entries = tokens * top_k;
  const int hidden = config_.hidden_size;
  DeviceArena& arena = step.arena;
  float* logits = arena.alloc<float>(static_cast<size_t>(tokens) * experts);
  std::optional<ProfileScope> scope(std::in_place, step.profile, step.exec.stream, "moe.router");
  // The router always multiplies float32 activations (DeepSeek's reference computes it in
  // float32 too): rounding here flips top-k choices. Prefill-sized batches: cuBLAS in float32 over
  // a float32 copy of the weights made for the step (E × hidden floats; the CUDA-core kernel ran
  // Qwen3-30B-A3B's 8×1024 router at 1.9 TFLOP/s, 19% of the prefill).
  if (tokens > kMaxMmaRows) {
    float* router_f32 = arena.alloc<float>(static_cast<size_t>(experts) * w.router.in);
    to_f32(step.exec, w.router.weight, int64_t(experts) * w.router.in, router_f32);
    gemm_f32(step.exec, x.f32, router_f32, tokens, experts, w.router.in, logits);
  } else {
    small_gemm(step.exec, GemmArgs{.x = x.f32,
                                        .rows = tokens,
                                        .k = w.router.in,
                                        .n = w.router.out,
                                        .weight = w.router.weight,
                                        .out = logits});
  }
  scope.emplace(step.profile, step.exec.stream, "moe.route_permute");
  int32_t* expert_ids = arena.alloc<int32_t>(entries);
  float* expert_weights = arena.alloc<float>(entries);
  route(step.exec, logits, w.selection_bias, tokens, experts, w.router_params, expert_ids, expert_weights);
  int32_t* offsets = arena.alloc<int32_t>(experts + 1);
  int32_t* positions = arena.alloc<int32_t>(entries);
  int32_t* source_rows = arena.alloc<int32_t>(entries);
  const size_t permute_ints = moe_permute_workspace_ints(entries, experts);
  int32_t* permute_workspace = permute_ints > 0 ? arena.alloc<int32_t>(permute_ints) : nullptr;
  moe_permute(step.exec,
              MoePermuteArgs{.expert_ids = expert_ids,
                             .entries = entries,
                             .top_k = top_k,
                             .experts = experts,
                             .offsets = offsets,
                             .positions = positions,
                             .source_rows = source_rows,
                             .load_counts = step.expert_load != nullptr
                                                ? step.expert_load + static_cast<int64_t>(layer_idx) * experts
                                                : nullptr,
                             .workspace = permute_workspace});
  float* expert_out = arena.alloc<float>(static_cast<size_t>(entries) * hidden);  // [entries, hidden] permuted
  SplitSums experts_out{expert_out, 1, 0};  // or the down projection's partial sums
  scope.emplace(step.profile, step.exec.stream, "moe.experts");
  if (tokens <= kMaxSmallGroupedRows) {  // small_gemm gathers the rows itself
    experts_out = moe_experts_streaming(step, w, x.f32, source_rows, offsets, tokens, expert_out);
  } else if (experts_stream(tokens)) {
    float* x_perm = arena.alloc<float>(static_cast<size_t>(entries) * hidden);
    gather_rows(step.exec, x.f32, hidden, source_rows, entries, x_perm, nullptr);
    experts_out = moe_experts_streaming(step, w, x_perm, nullptr, offsets, tokens, expert_out);
  } else {
    moe_experts_large(step, w, x.f32, source_rows, offsets, entries, expert_out);
  }
  float* shared_out = nullptr;
  float* shared_gate = nullptr;
  scope.emplace(step.profile, step.exec.stream, "moe.shared_experts");
  if (w.has_shared) {
    shared_out = arena.alloc<float>(static_cast<size_t>(tokens) * hidden);
    mlp(step, x, tokens, w.shared, shared_out);
    if (w.shared_gate.weight != nullptr) {
      shared_gate = arena.alloc<float>(tokens);
      linear(step, x, tokens, w.shared_gate, shared_gate);
    }
  }
  scope.emplace(step.profile, step.exec.stream, "moe.combine");
  MoeCombineArgs combine{.expert_out = experts_out.data,
                         .expert_splits = experts_out.splits,
                         .expert_split_stride = experts_out.split_stride,
                         .positions = positions,
                         .weights = expert_weights,
                         .tokens = tokens,
                         .top_k = top_k,
                         .hidden = hidden,
                         .shared_out = shared_out,
                         .shared_gate_logit = shared_gate,
                         .out = out};
  if (then != nullptr) {
    combine.residual = then->x;
    combine.norm_weight = then->weight;
    combine.eps = then->eps;
    combine.normed_f32 = then->out_f32;
    combine.normed_bf16 = then->out_bf16;
  }
  moe_combine(step.exec, combine);
}

// Grouped SwiGLU experts on x [entries, hidden] in permuted order, or on the rows x[x_rows[i]]
// (small_gemm's fused gather); an expert has at most `tokens` rows.
SplitSums CudaModel::moe_experts_streaming(Step& step, const DeviceMoe& w, const float* x, const int32_t* x_rows,
                                           const int32_t* offsets, int tokens, float* y) const {
  const int hidden = config_.hidden_size;
  const int inter = w.intermediate;
  const int entries = tokens * w.router_params.top_k;
  float* act = step.arena.alloc<float>(static_cast<size_t>(entries) * inter);
  const GemmArgs grouped{.rows = tokens, .offsets = offsets, .groups = w.num_experts, .total_rows = entries};
  GemmArgs gate_up = grouped;
  gate_up.x = x;
  gate_up.x_rows = x_rows;
  gate_up.k = hidden;
  gate_up.n = inter;
  gate_up.weight = w.experts_gate_up;
  gate_up.group_stride = 2LL * inter * hidden;
  gate_up.swiglu = true;
  gate_up.out = act;
  grouped_gemm(step, gate_up);
  GemmArgs down = grouped;
  down.x = act;
  down.k = inter;
  down.n = hidden;
  down.weight = w.experts_down;
  down.group_stride = static_cast<int64_t>(hidden) * inter;
  down.out = y;
  if (down.rows <= kMaxSmallGroupedRows) return cuda_core_gemm_unsummed(step, down);  // as grouped_gemm
  grouped_gemm(step, down);
  return SplitSums{y, 1, 0};
}

void CudaModel::moe_experts_large(Step& step, const DeviceMoe& w, const float* x, const int32_t* source_rows,
                                  const int32_t* offsets, int entries, float* y) const {
  const int hidden = config_.hidden_size;
  const int inter = w.intermediate;
  std::vector<int32_t> host_offsets(w.num_experts + 1);
  copy_to_host(host_offsets.data(), offsets, host_offsets.size() * sizeof(int32_t), step.exec.stream);
  synchronize_stream(step.exec.stream);
  const bool split = precision_ == PrefillPrecision::kSplitBf16;
  const size_t perm = static_cast<size_t>(entries) * hidden;
  float* x_perm = split ? step.arena.alloc<float>(perm) : nullptr;
  uint16_t* x_perm_bf16 = split ? nullptr : step.arena.alloc<uint16_t>(perm);
  gather_rows(step.exec, x, hidden, source_rows, entries, x_perm, x_perm_bf16);
  int most = 0;
  for (int e = 0; e < w.num_experts; ++e) most = std::max(most, host_offsets[e + 1] - host_offsets[e]);
  // gate_up [most, 2 · inter]: float32 in the split mode, bf16 (half the bytes) in the bf16 mode.
  const size_t gate_up_size = static_cast<size_t>(most) * 2 * inter;
  float* gate_up = split ? step.arena.alloc<float>(gate_up_size) : nullptr;
  uint16_t* gate_up_bf16 = split ? nullptr : step.arena.alloc<uint16_t>(gate_up_size);
  float* act = split ? step.arena.alloc<float>(static_cast<size_t>(most) * inter) : nullptr;
  uint16_t* act_bf16 = split ? nullptr : step.arena.alloc<uint16_t>(static_cast<size_t>(most) * inter);
  for (int e = 0; e < w.num_experts; ++e) {
    const int64_t begin = host_offsets[e];
    const int count = host_offsets[e + 1] - host_offsets[e];
    if (count == 0) continue;  // experts no token chose are skipped
    const uint16_t* gate_up_w = w.experts_gate_up + static_cast<int64_t>(e) * 2 * inter * hidden;
    if (split) {
      gemm(step, Act{x_perm + begin * hidden, nullptr}, count, gate_up_w, nullptr, 2 * inter, hidden, gate_up);
      silu_mul(step.exec, gate_up, count, inter, act, nullptr);
    } else {
      gemm_bf16(step.exec, x_perm_bf16 + begin * hidden, gate_up_w, count, 2 * inter, hidden, gate_up_bf16);
      silu_mul(step.exec, gate_up_bf16, count, inter, act_bf16);
    }
    gemm(step, Act{act, act_bf16}, count, w.experts_down + static_cast<int64_t>(e) * hidden * inter, nullptr, hidden,
         inter, y + begin * hidden);
  }
}

}  // namespace moeserve::cuda
