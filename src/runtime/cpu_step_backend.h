// The CPU as a StepBackend of the one decoder loop (model/decoder_loop.h): every op is the CPU
// step op of kernels/ops.h (the reference), every projection ops::gemm in float32 over the bf16
// (fp8, float32) weights; weights and the step arena live in host memory.
#pragma once

#include <cstring>

#include <memory>
#include <vector>

#include "kernels/context.h"
#include "model/step_model.h"

namespace moeserve {

// Host allocations for the weights (aligned to 64 bytes).
class CpuWeightMemory final : public WeightMemory {
 public:
  Result<void*> allocate(size_t bytes) override;
  void write(void* dst, const void* host, size_t bytes) override;
  size_t bytes() const { return bytes_; }
  bool holds_fp8() const override { return true; }
  bool holds_f32() const override { return true; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::vector<std::unique_ptr<void, Free>> buffers_;
  size_t bytes_ = 0;
};

// Numerics the CPU emulates on request, so their cost is measured against the exact reference.
struct CpuNumerics {
  // Run fp8 weights' GEMMs on FP8-quantized inputs (ops::Fp8Scales), as the GPU will; ue8m0: with
  // power-of-two activation scales (quantization_config.scale_fmt ue8m0).
  bool fp8_activations = false;
  bool ue8m0 = false;
  // --kv-cache-dtype fp8: every value written to the KV cache rounded to e4m3 (at the
  // checkpoint's k/v scales, else 1.0; saturating, as vLLM's fp8 cache). CpuDevice's cache then
  // holds the e4m3 bytes (KvLayers::fp8, the ops' cache_fp8); over a float32 cache (KvLayers::fp8
  // false) the written values are rounded in place instead: the same numbers, the reference tests
  // hold the bytes to.
  bool kv_fp8 = false;
};

class CpuStepBackend final : public StepBackend {
 public:
  CpuStepBackend(ExecContext& ctx, size_t arena_bytes, const CpuNumerics& numerics = {});

  StepArena& arena() override { return arena_; }
  void embedding(const WeightVector& table, int hidden, const int32_t* ids, int tokens, float* out) override;
  void rms_norm(const ops::RmsNormArgs& args) override;
  void rope(const ops::RopeArgs& args) override;
  bool rounds_kv_to_fp8() const override { return numerics_.kv_fp8; }
  void paged_attention(const ops::AttentionArgs& args, const StepInputs* tiles) override;
  void mla_absorb_q(const ops::MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) override;
  void mla_project_v(const ops::MlaDims& dims, const float* latent, const float* kv_b, float* out) override;
  void mla_prefill_attention(const ops::MlaPrefillArgs& args) override;
  void layer_norm(const ops::LayerNormArgs& args) override { ops::layer_norm(ctx_, args); }
  void indexer_topk(const ops::IndexerArgs& args) override { ops::indexer_topk(ctx_, args); }
  size_t mla_prefill_workspace_floats(const ops::MlaDims& dims, int ctx, int query_tile) override { return 0; }
  int mla_prefill_query_tile(const ops::MlaDims& dims, int count, int ctx) override { return count; }
  void route(const float* logits, const float* selection_bias, int tokens, int experts,
             const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) override;
  void moe_permute(const ops::MoePermuteArgs& args) override;
  void gather_rows(const float* x, int width, const int32_t* rows, int count, float* out_f32,
                   uint16_t* out_bf16) override;
  void scale_expert_inputs(const ops::ScaleExpertInputsArgs& args) override {
    ops::scale_expert_inputs(ctx_, args);
  }
  void moe_combine(const ops::MoeCombineArgs& args) override;
  void linear(Act x, int rows, const Projection& w, float* out) override;
  ops::SplitSums linear_unsummed(Act x, int rows, const Projection& w, float* out) override;
  void mlp(Act x, int rows, const MlpWeights& w, float* out) override;
  void router_logits(Act x, int rows, const Projection& router, float* logits) override;
  void fill_zero(void* dst, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override { std::memcpy(host, src, bytes); }
  void upload(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  ops::SplitSums routed_experts(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                const int32_t* offsets, int tokens, float* y) override;

 private:
  // args' weight fields ← w (stacked matrices group_stride apart), with this backend's fp8 mode.
  void set_weight(ops::GemmArgs& args, const Projection& w) const;

  ExecContext& ctx_;
  CpuNumerics numerics_;
  std::unique_ptr<std::byte[]> arena_memory_;
  StepArena arena_;
};

}  // namespace moeserve
