// CudaStepBackend: the kernels of kernels/cuda behind the decoder loop, and the choice among
// them by row count (see cuda_model.h for the measurements behind each limit).
//
// MoE experts: batches of up to kMaxMmaRows tokens run as two grouped streaming GEMMs (gate/up
// with SwiGLU fused, then down; small_gemm up to kMaxSmallGroupedRows tokens (2 for MXFP4), reading each
// token's row through the permutation, mma_gemm beyond) that read the expert offsets on the
// device, so the step never waits for the host (CUDA-graph safe) and experts no token chose cost
// nothing. Prefill-sized batches copy the offsets back once per layer and run each chosen expert
// through cuBLAS.
#include "backend/cuda/cuda_step_backend.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace moeserve::cuda {

// The CUDA loader holds bf16 (float32 checkpoints rounded as they load): bf16() and the checks
// below refuse a float32 weight.
void CudaStepBackend::embedding(const WeightVector& table, int hidden, const int32_t* ids, int tokens, float* out) {
  cuda::embedding(exec_, table.bf16(), hidden, ids, tokens, out);
}
void CudaStepBackend::rms_norm(const ops::RmsNormArgs& args) {
  MS_CHECK_MSG(args.weight_f32 == nullptr, "a float32 norm weight reached a bf16-only kernel");
  cuda::rms_norm(exec_, args);
}
void CudaStepBackend::rope(const ops::RopeArgs& args) { cuda::rope(exec_, args); }

void CudaStepBackend::paged_attention(const ops::AttentionArgs& args, const StepInputs* tiles) {
  // The tiled kernels pay off when the step's query tiles hold several rows (prefill); decode
  // rows (one per sequence) are better spread one block per (row, head).
  const bool tiled = tiles != nullptr && args.key_positions == nullptr && args.tokens > kSmallTile &&
                     tiles->num_query_tiles * 4 <= args.tokens;
  if (tiled && prefill_attention_mma_supported(args, tiles->query_tile_rows)) {
    paged_attention_prefill_mma(exec_, args, tiles->query_tiles, tiles->num_query_tiles, tiles->query_tile_rows,
                                precision_ == PrefillPrecision::kSplitBf16);
  } else if (tiled && prefill_attention_supported(args, tiles->query_tile_rows)) {
    paged_attention_prefill(exec_, args, tiles->query_tiles, tiles->num_query_tiles, tiles->query_tile_rows);
  } else {
    cuda::paged_attention(exec_, args);
  }
}

void CudaStepBackend::mla_absorb_q(const ops::MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) {
  cuda::mla_absorb_q(exec_, dims, q, kv_b, q_absorbed);
}
void CudaStepBackend::mla_project_v(const ops::MlaDims& dims, const float* latent, const float* kv_b, float* out) {
  cuda::mla_project_v(exec_, dims, latent, kv_b, out);
}
void CudaStepBackend::mla_prefill_attention(const ops::MlaPrefillArgs& args) {
  cuda::mla_prefill_attention(exec_, args, precision_ == PrefillPrecision::kBf16);
}
size_t CudaStepBackend::mla_prefill_workspace_floats(const ops::MlaDims& dims, int ctx, int query_tile) {
  return cuda::mla_prefill_workspace_floats(dims, ctx, query_tile);
}
int CudaStepBackend::mla_prefill_query_tile(const ops::MlaDims& dims, int count, int ctx) {
  return cuda::mla_prefill_query_tile(dims, count, ctx, kMlaScoreFloats);
}
void CudaStepBackend::route(const float* logits, const float* selection_bias, int tokens, int experts,
                            const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) {
  cuda::route(exec_, logits, selection_bias, tokens, experts, params, expert_ids, expert_weights);
}

void CudaStepBackend::moe_permute(const ops::MoePermuteArgs& args) {
  const size_t mark = arena_.used();
  ops::MoePermuteArgs with_workspace = args;
  const size_t ints = moe_permute_workspace_ints(args.entries, args.experts);
  with_workspace.workspace = ints > 0 ? arena_.alloc<int32_t>(ints) : nullptr;
  cuda::moe_permute(exec_, with_workspace);
  arena_.rewind(mark);  // queued: the stream runs it before anything that reuses the space
}

void CudaStepBackend::gather_rows(const float* x, int width, const int32_t* rows, int count, float* out_f32,
                                  uint16_t* out_bf16) {
  cuda::gather_rows(exec_, x, width, rows, count, out_f32, out_bf16);
}
void CudaStepBackend::moe_combine(const ops::MoeCombineArgs& args) {
  MS_CHECK_MSG(args.norm_weight_f32 == nullptr, "a float32 norm weight reached a bf16-only kernel");
  cuda::moe_combine(exec_, args);
}
void CudaStepBackend::fill_zero(void* dst, size_t bytes) { cuda::fill_zero(dst, bytes, exec_.stream); }

void CudaStepBackend::download(void* host, const void* src, size_t bytes) {
  if (bytes > 0) copy_to_host(host, src, bytes, exec_.stream);
  synchronize_stream(exec_.stream);
}

void CudaStepBackend::upload(void* dst, const void* host, size_t bytes) {
  if (bytes > 0) copy_to_device(dst, host, bytes, exec_.stream);
  synchronize_stream(exec_.stream);
}

namespace {
int max_small_grouped_rows(bool mxfp4) { return mxfp4 ? kMaxSmallMxfp4GroupedRows : kMaxSmallGroupedRows; }
}  // namespace

void CudaStepBackend::grouped_gemm(const GemmArgs& args) {
  if (args.rows <= max_small_grouped_rows(args.weight_mxfp4 != nullptr) || !mma_gemm_supported(args.k) ||
      (args.weight_fp8 != nullptr && !mma_gemm_supports_fp8(args.k, args.fp8))) {
    cuda_core_gemm(args);  // splits K of the down projection (few blocks at 1-4 tokens)
    return;
  }
  tensor_core_gemm(args);
}

void CudaStepBackend::cuda_core_gemm(const GemmArgs& args) {
  const size_t mark = arena_.used();
  float* workspace = arena_.alloc<float>(std::max<size_t>(1, small_gemm_workspace_floats(args)));
  small_gemm(exec_, args, workspace);
  arena_.rewind(mark);
}

SplitSums CudaStepBackend::cuda_core_gemm_unsummed(const GemmArgs& args) {
  float* workspace = arena_.alloc<float>(std::max<size_t>(1, small_gemm_workspace_floats(args)));
  return small_gemm_unsummed(exec_, args, workspace);
}

void CudaStepBackend::tensor_core_gemm(const GemmArgs& args) {
  const size_t mark = arena_.used();
  float* workspace = arena_.alloc<float>(std::max<size_t>(1, mma_gemm_workspace_floats(args)));
  mma_gemm(exec_, args, precision_ == PrefillPrecision::kSplitBf16, workspace);
  arena_.rewind(mark);
}

namespace {
ops::Fp8Scales fp8_scales(const Projection& w) {
  return ops::Fp8Scales{.scale = w.scale,
                        .block = w.scale_block,
                        .offset = w.scale_offset,
                        .row_blocks = w.scale_row_blocks};
}
// Whether mma_gemm streams w (FP8 weights need its block alignment).
bool mma_takes(const Projection& w) {
  return mma_gemm_supported(w.in) && (w.dtype != DType::kF8E4M3 || mma_gemm_supports_fp8(w.in, fp8_scales(w)));
}
// CudaStepBackend::streams_fp8 for a precision.
bool streams_fp8(const Projection& w, PrefillPrecision precision) {
  return w.dtype == DType::kF8E4M3 && precision == PrefillPrecision::kSplitBf16 && mma_takes(w);
}
}  // namespace

bool experts_run_large(const MoeWeights& w, PrefillPrecision precision) {
  return !w.glu.clamped && !w.experts_gate_up.bias.present() && !w.experts_down.bias.present() &&
         !w.experts_gate_up.mxfp4() && !streams_fp8(w.experts_gate_up, precision);
}

ops::Fp8Scales CudaStepBackend::fp8_scales_of(const Projection& w) const {
  ops::Fp8Scales scales = fp8_scales(w);
  scales.ue8m0 = config_.fp8_scale_ue8m0;
  return scales;
}

void CudaStepBackend::linear(Act x, int rows, const Projection& w, float* out) {
  GemmArgs args{.x = x.f32, .rows = rows, .k = w.in, .n = w.out, .out = out};
  set_weight(args, w);
  if (rows <= kMaxSmallDenseRows || (rows <= kSmallTile && !mma_takes(w))) {
    cuda_core_gemm(args);
  } else if ((rows <= kMaxMmaDenseRows && mma_takes(w)) || w.mxfp4() || streams_fp8(w)) {  // (cuBLAS has no MXFP4)
    tensor_core_gemm(args);
  } else if (!fp8_tensor_core_gemm(x, rows, w, out, nullptr)) {
    const size_t mark = arena_.used();
    gemm(x, rows, bf16_weights(w), w.bias.bf16(), w.out, w.in, out);
    arena_.rewind(mark);
  }
}

bool CudaStepBackend::fp8_tensor_core_gemm(Act x, int rows, const Projection& w, float* out_f32, uint16_t* out_bf16,
                                           int out_spare_rows, bool x_gate_up) {
  if (precision_ != PrefillPrecision::kBf16 || w.dtype != DType::kF8E4M3 || w.bias.present() ||
      !linear_fp8_supported(w.out, w.in, fp8_scales_of(w))) {
    return false;
  }
  const size_t mark = arena_.used();
  void* workspace = arena_.alloc_bytes(linear_fp8_workspace_bytes(rows, w.out, w.in));
  const bool ran = linear_fp8(exec_, x.bf16 != nullptr ? nullptr : x.f32, x.bf16, rows, w.fp8(), fp8_scales_of(w),
                              w.out, w.in, out_f32, out_bf16, workspace, out_spare_rows, x_gate_up);
  arena_.rewind(mark);
  if (!ran) {
    static std::once_flag once;
    std::call_once(once, [&] {
      spdlog::warn("cuBLASLt has no FP8 kernel for a {}x{}x{} GEMM: FP8 weights multiply as dequantized bf16 there",
                   rows, w.out, w.in);
    });
  }
  return ran;
}

bool CudaStepBackend::streams_fp8(const Projection& w) const { return cuda::streams_fp8(w, precision_); }

const uint16_t* CudaStepBackend::bf16_weights(const Projection& w) {
  if (w.dtype != DType::kF8E4M3) return w.bf16();
  uint16_t* weights = arena_.alloc<uint16_t>(size_t(w.out) * w.in);  // [out, in]
  fp8_to_bf16(exec_, w.fp8(), fp8_scales(w), w.out, w.in, weights);
  return weights;
}

SplitSums CudaStepBackend::linear_unsummed(Act x, int rows, const Projection& w, float* out) {
  // One-row projections leave their split-K partial sums for the norm after them (a bias rides
  // in split 0's sums).
  if (rows > kMaxSmallDenseRows) {
    linear(x, rows, w, out);
    return SplitSums{out, 1, 0};
  }
  GemmArgs args{.x = x.f32, .rows = rows, .k = w.in, .n = w.out, .out = out};
  set_weight(args, w);
  return cuda_core_gemm_unsummed(args);
}

void CudaStepBackend::gemm(Act x, int rows, const uint16_t* w, const uint16_t* bias, int n, int k, float* out) {
  const int64_t count = static_cast<int64_t>(rows) * k;
  if (precision_ == PrefillPrecision::kSplitBf16) {
    MS_CHECK(x.f32 != nullptr);
    const size_t mark = arena_.used();
    uint16_t* hi = arena_.alloc<uint16_t>(count);
    uint16_t* lo = arena_.alloc<uint16_t>(count);
    to_bf16_split(exec_, x.f32, count, hi, lo);
    gemm_bf16(exec_, hi, w, bias, rows, n, k, out);
    gemm_bf16(exec_, lo, w, nullptr, rows, n, k, out, /*accumulate=*/true);
    arena_.rewind(mark);
    return;
  }
  const uint16_t* x_bf16 = x.bf16;
  const size_t mark = arena_.used();
  if (x_bf16 == nullptr) {
    uint16_t* converted = arena_.alloc<uint16_t>(count);
    to_bf16(exec_, x.f32, count, converted);
    x_bf16 = converted;
  }
  gemm_bf16(exec_, x_bf16, w, bias, rows, n, k, out);
  arena_.rewind(mark);
}

// out [rows, hidden] = down(silu(gate(x)) · up(x)).
void CudaStepBackend::mlp(Act x, int rows, const MlpWeights& w, float* out) {
  const int inter = w.intermediate;
  if (rows <= kMaxSmallDenseRows) {
    float* act = arena_.alloc<float>(static_cast<size_t>(rows) * inter);
    GemmArgs gate_up{.x = x.f32, .rows = rows, .k = w.gate_up.in, .n = inter, .swiglu = true, .out = act};
    set_weight(gate_up, w.gate_up);
    small_gemm(exec_, gate_up);
    linear(Act{act, nullptr}, rows, w.down, out);
    return;
  }
  float* gate_up = arena_.alloc<float>(static_cast<size_t>(rows) * 2 * inter);
  linear(x, rows, w.gate_up, gate_up);
  if (streams_fp8(w.down)) {
    float* act = arena_.alloc<float>(static_cast<size_t>(rows) * inter);
    silu_mul(exec_, gate_up, rows, inter, act, nullptr);
    linear(Act{act, nullptr}, rows, w.down, out);
    return;
  }
  const bool split = precision_ == PrefillPrecision::kSplitBf16;
  float* act = split ? arena_.alloc<float>(static_cast<size_t>(rows) * inter) : nullptr;
  uint16_t* act_bf16 = split ? nullptr : arena_.alloc<uint16_t>(static_cast<size_t>(rows) * inter);
  silu_mul(exec_, gate_up, rows, inter, act, act_bf16);
  if (fp8_tensor_core_gemm(Act{act, act_bf16}, rows, w.down, out, nullptr)) return;
  const size_t mark = arena_.used();
  gemm(Act{act, act_bf16}, rows, bf16_weights(w.down), w.down.bias.bf16(), w.down.out, w.down.in, out);
  arena_.rewind(mark);
}

void CudaStepBackend::router_logits(Act x, int rows, const Projection& router, float* logits) {
  // The router always multiplies float32 activations (DeepSeek's reference computes it in
  // float32 too): rounding here flips top-k choices. Prefill-sized batches: cuBLAS in float32 over
  // a float32 copy of the weights made for the step (E × hidden floats; the CUDA-core kernel ran
  // Qwen3-30B-A3B's 8×1024 router at 1.9 TFLOP/s, 19% of the prefill).
  // GPT-OSS's router has a bias (float32).
  if (rows > kMaxMmaRows) {
    const size_t mark = arena_.used();
    float* router_f32 = arena_.alloc<float>(static_cast<size_t>(router.out) * router.in);
    to_f32(exec_, router.bf16(), int64_t(router.out) * router.in, router_f32);
    gemm_f32(exec_, x.f32, router_f32, rows, router.out, router.in, logits,
             router.bias.present() ? router.bias.f32() : nullptr);
    arena_.rewind(mark);
    return;
  }
  GemmArgs args{.x = x.f32, .rows = rows, .k = router.in, .n = router.out, .out = logits};
  set_weight(args, router);
  small_gemm(exec_, args);
}

SplitSums CudaStepBackend::routed_experts(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                          const int32_t* offsets, int tokens, float* y) {
  const int hidden = config_.hidden_size;
  const int entries = tokens * w.router_params.top_k;
  if (tokens <= max_small_grouped_rows(w.experts_gate_up.mxfp4())) {
    return experts_streaming(w, x, source_rows, offsets, tokens, y);
  }
  if (!experts_run_large(w, precision_) ||
      experts_stream(config_, tokens)) {  // small_gemm gathers the rows itself; mma_gemm does not
    float* x_perm = arena_.alloc<float>(static_cast<size_t>(entries) * hidden);
    cuda::gather_rows(exec_, x, hidden, source_rows, entries, x_perm, nullptr);
    return experts_streaming(w, x_perm, nullptr, offsets, tokens, y);
  }
  experts_large(w, x, source_rows, offsets, entries, y);
  return SplitSums{y, 1, 0};
}

// Grouped SwiGLU experts on x [entries, hidden] in permuted order, or on the rows x[x_rows[i]]
// (small_gemm's fused gather); a slot has at most `tokens` rows.
SplitSums CudaStepBackend::experts_streaming(const MoeWeights& w, const float* x, const int32_t* x_rows,
                                             const int32_t* offsets, int tokens, float* y) {
  const int hidden = config_.hidden_size;
  const int inter = w.intermediate;
  const int entries = tokens * w.router_params.top_k;
  float* act = arena_.alloc<float>(static_cast<size_t>(entries) * inter);
  const GemmArgs grouped{.rows = tokens, .offsets = offsets, .groups = w.num_slots, .total_rows = entries};
  GemmArgs gate_up = grouped;
  gate_up.x = x;
  gate_up.x_rows = x_rows;
  gate_up.k = hidden;
  gate_up.n = inter;
  gate_up.group_stride = 2LL * inter * hidden;
  set_weight(gate_up, w.experts_gate_up);
  gate_up.swiglu = true;
  gate_up.glu = w.glu;
  gate_up.out = act;
  grouped_gemm(gate_up);
  GemmArgs down = grouped;
  down.x = act;
  down.k = inter;
  down.n = hidden;
  down.group_stride = static_cast<int64_t>(hidden) * inter;
  set_weight(down, w.experts_down);
  down.out = y;
  if (down.rows <= max_small_grouped_rows(w.experts_down.mxfp4())) {
    return cuda_core_gemm_unsummed(down);  // as grouped_gemm
  }
  grouped_gemm(down);
  return SplitSums{y, 1, 0};
}

void CudaStepBackend::set_weight(GemmArgs& args, const Projection& w) const {
  if (w.mxfp4()) {
    args.weight_mxfp4 = w.mxfp4_blocks();
    args.mx_scale = w.mx_scale;
  } else if (w.dtype == DType::kF8E4M3) {
    args.weight_fp8 = w.fp8();
    args.fp8 = fp8_scales_of(w);
    args.scale_group_stride = int64_t(w.out) * w.scale_cols();
  } else {
    args.weight = w.bf16();
  }
  args.bias = w.bias.if_bf16();
  args.bias_f32 = w.bias.if_f32();
  args.bias_group_stride = w.out;
}

void CudaStepBackend::experts_large(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                    const int32_t* offsets, int entries, float* y) {
  const int hidden = config_.hidden_size;
  const int inter = w.intermediate;
  std::vector<int32_t> host_offsets(w.num_slots + 1);
  copy_to_host(host_offsets.data(), offsets, host_offsets.size() * sizeof(int32_t), exec_.stream);
  synchronize_stream(exec_.stream);
  const bool split = precision_ == PrefillPrecision::kSplitBf16;
  const size_t perm = static_cast<size_t>(entries) * hidden;
  float* x_perm = split ? arena_.alloc<float>(perm) : nullptr;
  uint16_t* x_perm_bf16 = split ? nullptr : arena_.alloc<uint16_t>(perm);
  cuda::gather_rows(exec_, x, hidden, source_rows, entries, x_perm, x_perm_bf16);
  int most = 0;
  for (int e = 0; e < w.num_slots; ++e) most = std::max(most, host_offsets[e + 1] - host_offsets[e]);
  // gate_up [most + kLinearFp8SpareRows, 2 · inter]: float32 in the split mode, bf16 (half the
  // bytes) in the bf16 mode; the spare rows let linear_fp8 run one product per expert.
  const size_t gate_up_size = static_cast<size_t>(most + kLinearFp8SpareRows) * 2 * inter;
  float* gate_up = split ? arena_.alloc<float>(gate_up_size) : nullptr;
  uint16_t* gate_up_bf16 = split ? nullptr : arena_.alloc<uint16_t>(gate_up_size);
  float* act = split ? arena_.alloc<float>(static_cast<size_t>(most) * inter) : nullptr;
  uint16_t* act_bf16 = split ? nullptr : arena_.alloc<uint16_t>(static_cast<size_t>(most) * inter);
  for (int e = 0; e < w.num_slots; ++e) {
    const int64_t begin = host_offsets[e];
    const int count = host_offsets[e + 1] - host_offsets[e];
    if (count == 0) continue;  // experts no token chose are skipped
    const Projection gate_up_e = w.experts_gate_up.stacked_at(e);
    const Projection down_e = w.experts_down.stacked_at(e);
    float* y_e = y + begin * hidden;
    // FP8 on tensor cores: the gate/up buffer's spare rows, and y's rows past the expert's (the
    // later experts', rewritten after it), take linear_fp8's padding rows; the down projection
    // quantizes silu(gate) · up straight from the gate/up product.
    if (!split &&
        fp8_tensor_core_gemm(Act{nullptr, x_perm_bf16 + begin * hidden}, count, gate_up_e, nullptr, gate_up_bf16,
                             most + kLinearFp8SpareRows - count) &&
        fp8_tensor_core_gemm(Act{nullptr, gate_up_bf16}, count, down_e, y_e, nullptr,
                             entries - static_cast<int>(begin) - count, /*x_gate_up=*/true)) {
      continue;
    }
    const size_t mark = arena_.used();  // FP8 experts: their bf16 copies, one expert at a time
    const uint16_t* gate_up_w = bf16_weights(gate_up_e);
    if (split) {
      gemm(Act{x_perm + begin * hidden, nullptr}, count, gate_up_w, nullptr, 2 * inter, hidden, gate_up);
      silu_mul(exec_, gate_up, count, inter, act, nullptr);
    } else {
      gemm_bf16(exec_, x_perm_bf16 + begin * hidden, gate_up_w, count, 2 * inter, hidden, gate_up_bf16);
      silu_mul(exec_, gate_up_bf16, count, inter, act_bf16);
    }
    gemm(Act{act, act_bf16}, count, bf16_weights(down_e), nullptr, hidden, inter, y_e);
    arena_.rewind(mark);
  }
}

void CudaStepBackend::begin_span(const char* name) {
  if (profile_ != nullptr) profile_->begin(name, exec_.stream);
}
void CudaStepBackend::end_span() {
  if (profile_ != nullptr) profile_->end(exec_.stream);
}

}  // namespace moeserve::cuda
