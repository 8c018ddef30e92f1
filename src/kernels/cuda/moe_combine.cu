// CUDA op: the MoE combine — each token's top-k expert outputs (in permuted order) weighted and
// summed, plus the shared expert (scaled by sigmoid of its gate when the model has one). A
// gather, not a scatter: no atomics, the same result every run.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void moe_combine_kernel(MoeCombineArgs args) {
  start_after_prior_grids();
  const int token = blockIdx.x;
  float shared_scale = 1.0f;
  if (args.shared_gate_logit != nullptr) shared_scale = 1.0f / (1.0f + expf(-args.shared_gate_logit[token]));
  for (int d = threadIdx.x; d < args.hidden; d += blockDim.x) {
    float sum = 0.0f;
    for (int k = 0; k < args.top_k; ++k) {
      const int64_t pos = args.positions[token * args.top_k + k];
      sum += args.weights[token * args.top_k + k] * args.expert_out[pos * args.hidden + d];
    }
    if (args.shared_out != nullptr)
      sum += shared_scale * args.shared_out[static_cast<int64_t>(token) * args.hidden + d];
    args.out[static_cast<int64_t>(token) * args.hidden + d] = sum;
  }
}

}  // namespace

void moe_combine(const GpuExec& exec, const MoeCombineArgs& args) {
  if (args.tokens == 0) return;
  launch_dependent("moe_combine", moe_combine_kernel, args.tokens, 256, 0, exec, args);
}

}  // namespace moeserve::cuda
