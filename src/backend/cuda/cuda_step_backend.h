// The CUDA GPU as a StepBackend of the one decoder loop (model/decoder_loop.h): every op is the
// kernel of the same name in kernels/cuda, queued on one stream, every buffer from the step's
// device arena; the projections choose their kernels by row count (cuda_model.h's kMax*Rows,
// measured on an H200) and run in the configured prefill precision.
#pragma once

#include "model/step_model.h"
#include "backend/cuda/cuda_model.h"

namespace moeserve::cuda {

// Whether routed_experts runs w's experts one at a time on cuBLAS / cuBLASLt (experts_large) past
// kMaxMmaRows tokens. Experts with biases, the clamped SwiGLU or MXFP4 weights (GPT-OSS) stream
// at every size instead (the per-expert cuBLAS path has none of them), as FP8 experts do in the
// float32-like mode (cuBLAS would multiply bf16-rounded weights).
bool experts_run_large(const MoeWeights& w, PrefillPrecision precision);

class CudaStepBackend final : public StepBackend {
 public:
  CudaStepBackend(const GpuExec& exec, StepArena& arena, const ModelConfig& config, PrefillPrecision precision,
                  OpProfile* profile)
      : exec_(exec), arena_(arena), config_(config), precision_(precision), profile_(profile) {}

  StepArena& arena() override { return arena_; }
  void embedding(const WeightVector& table, int hidden, const int32_t* ids, int tokens, float* out) override;
  void rms_norm(const ops::RmsNormArgs& args) override;
  void rope(const ops::RopeArgs& args) override;
  void paged_attention(const ops::AttentionArgs& args, const StepInputs* tiles) override;
  void mla_absorb_q(const ops::MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) override;
  void mla_project_v(const ops::MlaDims& dims, const float* latent, const float* kv_b, float* out) override;
  void mla_prefill_attention(const ops::MlaPrefillArgs& args) override;
  size_t mla_prefill_workspace_floats(const ops::MlaDims& dims, int ctx, int query_tile) override;
  int mla_prefill_query_tile(const ops::MlaDims& dims, int count, int ctx) override;
  void layer_norm(const ops::LayerNormArgs& args) override { cuda::layer_norm(exec_, args); }
  void indexer_topk(const ops::IndexerArgs& args) override { cuda::indexer_topk(exec_, args); }
  void route(const float* logits, const float* selection_bias, int tokens, int experts,
             const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) override;
  void moe_permute(const ops::MoePermuteArgs& args) override;
  void gather_rows(const float* x, int width, const int32_t* rows, int count, float* out_f32,
                   uint16_t* out_bf16) override;
  void scale_expert_inputs(const ops::ScaleExpertInputsArgs& args) override {
    cuda::scale_expert_inputs(exec_, args);
  }
  void moe_combine(const ops::MoeCombineArgs& args) override;
  void fill_zero(void* dst, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  bool bf16_activations(int rows) override {
    return precision_ == PrefillPrecision::kBf16 && rows > kMaxSmallDenseRows;
  }
  void linear(Act x, int rows, const Projection& w, float* out) override;
  ops::SplitSums linear_unsummed(Act x, int rows, const Projection& w, float* out) override;
  void mlp(Act x, int rows, const MlpWeights& w, float* out) override;
  void router_logits(Act x, int rows, const Projection& router, float* logits) override;
  ops::SplitSums routed_experts(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                const int32_t* offsets, int tokens, float* y) override;
  void begin_span(const char* name) override;
  void end_span() override;

 private:
  // Grouped experts (offsets on the device): small_gemm up to kMaxSmallGroupedRows
  // (kMaxSmallMxfp4GroupedRows for MXFP4 weights; or for a K mma_gemm does not take), mma_gemm beyond.
  void grouped_gemm(const GemmArgs& args);
  // mma_gemm in the configured precision, K split over a workspace from the arena when it pays.
  void tensor_core_gemm(const GemmArgs& args);
  // small_gemm (float32 activations), K split over a workspace from the arena when it pays.
  void cuda_core_gemm(const GemmArgs& args);
  // The same, its split-K partial sums left for the consumer (small_gemm_unsummed); the
  // workspace stays allocated until the caller rewinds the arena.
  SplitSums cuda_core_gemm_unsummed(const GemmArgs& args);
  // cuBLAS GEMM in the configured prefill precision: out [rows, n] = x [rows, k] · w [n, k]ᵀ (+ bias).
  void gemm(Act x, int rows, const uint16_t* w, const uint16_t* bias, int n, int k, float* out);
  // y, or (small_gemm's split K, as grouped_gemm picks it) its partial sums for the combine.
  SplitSums experts_streaming(const MoeWeights& w, const float* x, const int32_t* x_rows, const int32_t* offsets,
                              int tokens, float* y);
  // args' weight (bf16 or MXFP4) and bias (bf16 or float32) from w's; grouped (the experts),
  // the biases stacked per group as the weights are (group_stride set by the caller).
  void set_weight(GemmArgs& args, const Projection& w) const;
  // w's FP8 block scales, with scale_fmt's ue8m0 (power-of-two activation scales).
  ops::Fp8Scales fp8_scales_of(const Projection& w) const;
  // Whether FP8 weights w stream through mma_gemm at every row count: in the float32-like mode,
  // where a bf16 copy for cuBLAS would round them.
  bool streams_fp8(const Projection& w) const;
  // The bf16 weights cuBLAS multiplies: w's own, or FP8 weights dequantized into the arena (the
  // caller rewinds it after the GEMM).
  const uint16_t* bf16_weights(const Projection& w);
  // In the bf16 mode, FP8 weights without a bias multiply on FP8 tensor cores (linear_fp8: the
  // activations quantized per row per 128 columns, as vLLM's block-FP8 path does): out [rows,
  // w.out] float32 or bf16 = x · wᵀ; out_spare_rows and x_gate_up as linear_fp8's. False
  // (nothing done) where it does not apply.
  bool fp8_tensor_core_gemm(Act x, int rows, const Projection& w, float* out_f32, uint16_t* out_bf16,
                            int out_spare_rows = 0, bool x_gate_up = false);
  // Prefill-sized batches: the offsets copied to the host once, each chosen expert through cuBLAS
  // (experts without biases and with the plain SwiGLU).
  void experts_large(const MoeWeights& w, const float* x, const int32_t* source_rows, const int32_t* offsets,
                     int entries, float* y);

  GpuExec exec_;
  StepArena& arena_;
  const ModelConfig& config_;
  PrefillPrecision precision_;
  OpProfile* profile_;
};

}  // namespace moeserve::cuda
