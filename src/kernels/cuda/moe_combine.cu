// CUDA op: the MoE combine — each token's top-k expert outputs (in permuted order) weighted and
// summed, plus the shared expert (scaled by sigmoid of its gate when the model has one). A
// gather, not a scatter: no atomics, the same result every run. Optionally fused with the
// residual add + RMSNorm that follows the MoE block (one launch fewer per layer).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads) moe_combine_kernel(MoeCombineArgs args) {
  start_after_prior_grids();
  __shared__ float scratch[32];
  __shared__ const float* expert_rows[kMaxCombineTopK];  // the token's k-th expert output row
  __shared__ float weights[kMaxCombineTopK];
  const int token = blockIdx.x;
  const int64_t row = static_cast<int64_t>(token) * args.hidden;
  for (int k = threadIdx.x; k < args.top_k; k += kThreads) {
    expert_rows[k] = args.expert_out + static_cast<int64_t>(args.positions[token * args.top_k + k]) * args.hidden;
    weights[k] = args.weights[token * args.top_k + k];
  }
  __syncthreads();
  float shared_scale = 1.0f;
  if (args.shared_gate_logit != nullptr) shared_scale = 1.0f / (1.0f + expf(-args.shared_gate_logit[token]));
  float sum_squares = 0.0f;
  for (int d = threadIdx.x; d < args.hidden; d += kThreads) {
    float sum = 0.0f;
    for (int k = 0; k < args.top_k; ++k) sum += weights[k] * expert_rows[k][d];
    if (args.shared_out != nullptr) sum += shared_scale * args.shared_out[row + d];
    if (args.residual == nullptr) {
      args.out[row + d] = sum;
    } else {
      const float value = args.residual[row + d] + sum;
      args.residual[row + d] = value;
      sum_squares += value * value;
    }
  }
  if (args.residual == nullptr) return;  // uniform over the block
  sum_squares = block_sum(sum_squares, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.hidden) + args.eps);
  for (int d = threadIdx.x; d < args.hidden; d += kThreads) {
    const float value = args.residual[row + d] * inv_rms * bf16_bits_to_float(args.norm_weight[d]);
    if (args.normed_f32 != nullptr) args.normed_f32[row + d] = value;
    if (args.normed_bf16 != nullptr) args.normed_bf16[row + d] = float_to_bf16_bits(value);
  }
}

}  // namespace

void moe_combine(const GpuExec& exec, const MoeCombineArgs& args) {
  if (args.tokens == 0) return;
  if (args.top_k > kMaxCombineTopK) {
    std::fprintf(stderr, "moeserve: moe_combine: top_k %d exceeds %d\n", args.top_k, kMaxCombineTopK);
    std::abort();
  }
  launch_dependent("moe_combine", moe_combine_kernel, args.tokens, kThreads, 0, exec, args);
}

}  // namespace moeserve::cuda
