// CpuStepBackend: each StepBackend call is the CPU step op of the same name (kernels/cpu/).
#include "runtime/cpu_step_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace moeserve {

void CpuWeightMemory::Free::operator()(void* p) const { std::free(p); }

Result<void*> CpuWeightMemory::allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) return Error{"out of host memory for the model weights"};
  buffers_.emplace_back(p);
  bytes_ += rounded;
  return p;
}

void CpuWeightMemory::write(void* dst, const void* host, size_t bytes) { std::memcpy(dst, host, bytes); }

CpuStepBackend::CpuStepBackend(ExecContext& ctx, size_t arena_bytes, const CpuNumerics& numerics)
    : ctx_(ctx),
      numerics_(numerics),
      arena_memory_(new std::byte[arena_bytes]),
      arena_(arena_memory_.get(), arena_bytes) {}

void CpuStepBackend::set_weight(ops::GemmArgs& args, const Projection& w) const {
  args.group_stride = static_cast<int64_t>(w.out) * w.in;
  args.bias = w.bias.if_bf16();
  args.bias_f32 = w.bias.if_f32();
  args.bias_group_stride = w.out;
  if (w.dtype == DType::kF32) {
    args.weight_f32 = w.f32();
    return;
  }
  if (w.dtype != DType::kF8E4M3) {
    args.weight = w.bf16();
    return;
  }
  args.weight_fp8 = w.fp8();
  args.fp8 = ops::Fp8Scales{.scale = w.scale,
                            .block = w.scale_block,
                            .offset = w.scale_offset,
                            .quantize_activations = numerics_.fp8_activations,
                            .ue8m0 = numerics_.ue8m0};
  args.scale_group_stride = w.out * w.scale_cols();
}

void CpuStepBackend::embedding(const WeightVector& table, int hidden, const int32_t* ids, int tokens, float* out) {
  if (table.dtype == DType::kF32) {
    ops::embedding(ctx_, table.f32(), hidden, ids, tokens, out);
  } else {
    ops::embedding(ctx_, table.bf16(), hidden, ids, tokens, out);
  }
}
void CpuStepBackend::rms_norm(const ops::RmsNormArgs& args) { ops::rms_norm(ctx_, args); }
void CpuStepBackend::rope(const ops::RopeArgs& args) {
  ops::rope(ctx_, args);  // an e4m3 cache (cache_fp8) gets the rounded bytes
  if (args.cache_fp8 || !numerics_.kv_fp8 || args.cache == nullptr) return;
  // kv_fp8 over a float32 cache: the entries just written ([entry_size] at slot slots[t]) divided
  // by their scales and rounded in place, the same values an e4m3 cache decodes to.
  for (int t = 0; t < args.tokens; ++t) {
    float* entry = args.cache + static_cast<int64_t>(args.slots[t]) * args.entry_size;
    for (int i = 0; i < args.entry_size; ++i) {
      entry[i] = round_to_f8e4m3(entry[i] / (i < args.cache_value_begin ? args.cache_scales.k : args.cache_scales.v));
    }
  }
}
void CpuStepBackend::paged_attention(const ops::AttentionArgs& args, const StepInputs*) {
  ops::paged_attention(ctx_, args);
}
void CpuStepBackend::mla_absorb_q(const ops::MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) {
  ops::mla_absorb_q(ctx_, dims, q, kv_b, q_absorbed);
}
void CpuStepBackend::mla_project_v(const ops::MlaDims& dims, const float* latent, const float* kv_b, float* out) {
  ops::mla_project_v(ctx_, dims, latent, kv_b, out);
}
void CpuStepBackend::mla_prefill_attention(const ops::MlaPrefillArgs& args) { ops::mla_prefill_attention(ctx_, args); }
void CpuStepBackend::route(const float* logits, const float* selection_bias, int tokens, int experts,
                           const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) {
  ops::route(ctx_, logits, selection_bias, tokens, experts, params, expert_ids, expert_weights);
}
void CpuStepBackend::moe_permute(const ops::MoePermuteArgs& args) { ops::moe_permute(ctx_, args); }
void CpuStepBackend::gather_rows(const float* x, int width, const int32_t* rows, int count, float* out_f32,
                                 uint16_t* out_bf16) {
  ops::gather_rows(ctx_, x, width, rows, count, out_f32, out_bf16);
}
void CpuStepBackend::fill_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }
void CpuStepBackend::moe_combine(const ops::MoeCombineArgs& args) { ops::moe_combine(ctx_, args); }

void CpuStepBackend::linear(Act x, int rows, const Projection& w, float* out) {
  ops::GemmArgs args{.x = x.f32, .rows = rows, .k = w.in, .n = w.out, .out = out};
  set_weight(args, w);
  ops::gemm(ctx_, args);
}

ops::SplitSums CpuStepBackend::linear_unsummed(Act x, int rows, const Projection& w, float* out) {
  linear(x, rows, w, out);
  return ops::SplitSums{out, 1, 0};
}

void CpuStepBackend::mlp(Act x, int rows, const MlpWeights& w, float* out) {
  std::vector<float> act(static_cast<size_t>(rows) * w.intermediate);  // [rows, I]
  ops::GemmArgs gate_up{
      .x = x.f32, .rows = rows, .k = w.gate_up.in, .n = w.intermediate, .swiglu = true, .out = act.data()};
  set_weight(gate_up, w.gate_up);
  ops::gemm(ctx_, gate_up);
  linear(Act{act.data(), nullptr}, rows, w.down, out);
}

void CpuStepBackend::router_logits(Act x, int rows, const Projection& router, float* logits) {
  linear(x, rows, router, logits);
}

ops::SplitSums CpuStepBackend::routed_experts(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                              const int32_t* offsets, int tokens, float* y) {
  const int hidden = w.router.in;
  const int inter = w.intermediate;
  const int entries = tokens * w.router_params.top_k;
  // [entries, I] permuted; host memory of its own (expert parallelism runs it on every EP rank's
  // tokens, more than the step's arena was sized for)
  std::vector<float> act(static_cast<size_t>(entries) * inter);
  ops::GemmArgs gate_up{.x = x,
                        .rows = entries,
                        .k = hidden,
                        .n = inter,
                        .offsets = offsets,
                        .groups = w.num_slots,
                        .total_rows = entries,
                        .swiglu = true,
                        .glu = w.glu,
                        .out = act.data(),
                        .x_rows = source_rows};
  set_weight(gate_up, w.experts_gate_up);
  ops::gemm(ctx_, gate_up);
  ops::GemmArgs down{.x = act.data(),
                     .rows = entries,
                     .k = inter,
                     .n = hidden,
                     .offsets = offsets,
                     .groups = w.num_slots,
                     .total_rows = entries,
                     .out = y};
  set_weight(down, w.experts_down);
  ops::gemm(ctx_, down);
  return ops::SplitSums{y, 1, 0};
}

}  // namespace moeserve
