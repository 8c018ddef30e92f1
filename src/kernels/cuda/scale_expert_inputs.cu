// CUDA op: Llama 4's input-scaled experts (ops::scale_expert_inputs), one block per entry: its
// token row [hidden] times its routing weight, float4 at a time where the rows allow.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void scale_expert_inputs_kernel(ops::ScaleExpertInputsArgs args) {
  start_after_prior_grids();
  const int e = blockIdx.x;
  const float weight = args.weights[e];
  const float* row = args.x + static_cast<int64_t>(e / args.top_k) * args.hidden;  // [hidden]
  float* dst = args.x_scaled + static_cast<int64_t>(e) * args.hidden;            // [hidden]
  if (args.hidden % 4 == 0) {
    for (int i = threadIdx.x; i < args.hidden / 4; i += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(row)[i];
      reinterpret_cast<float4*>(dst)[i] = make_float4(v.x * weight, v.y * weight, v.z * weight, v.w * weight);
    }
  } else {
    for (int i = threadIdx.x; i < args.hidden; i += blockDim.x) dst[i] = row[i] * weight;
  }
  __syncthreads();  // every thread has read the weight before it is replaced
  if (threadIdx.x == 0) {
    args.entry_rows[args.positions[e]] = e;
    args.weights[e] = weight != 0.0f ? 1.0f : 0.0f;
  }
}

}  // namespace

void scale_expert_inputs(const GpuExec& exec, const ops::ScaleExpertInputsArgs& args) {
  if (args.entries == 0) return;
  launch_dependent("scale_expert_inputs", scale_expert_inputs_kernel, args.entries, 256, 0, exec, args);
}

}  // namespace moeserve::cuda
