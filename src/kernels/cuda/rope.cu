// CUDA op: rotary position embedding in place (ops::rope): half-split or interleaved pairs,
// cos/sin from float32 position × inv_freq as the CPU reference computes them.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void rope_kernel(RopeArgs args) {
  start_after_prior_grids();
  const int token = blockIdx.x;
  const float position = static_cast<float>(args.positions[token]);
  const int pairs = args.heads * args.half;
  for (int item = threadIdx.x; item < pairs; item += blockDim.x) {
    const int head = item / args.half;
    const int i = item % args.half;
    const float angle = position * args.inv_freq[i];
    const float c = cosf(angle) * args.attention_factor;
    const float s = sinf(angle) * args.attention_factor;
    float* v = args.x + static_cast<int64_t>(token) * args.token_stride +
               static_cast<int64_t>(head) * args.head_stride + args.rotary_offset;
    const int a = args.interleaved ? 2 * i : i;
    const int b = args.interleaved ? 2 * i + 1 : i + args.half;
    const float x0 = v[a];
    const float x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x1 * c + x0 * s;
  }
}

}  // namespace

void rope(const GpuExec& exec, const RopeArgs& args) {
  if (args.tokens == 0 || args.half == 0) return;
  launch_dependent("rope", rope_kernel, args.tokens, 128, 0, exec, args);
}

}  // namespace moeserve::cuda
