// CUDA op: fused residual add + RMSNorm (ops::add_inplace followed by ops::rms_norm), one block
// per row, float32 statistics; also the plain in-place norm of per-head q/k and MLA latents.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void rms_norm_kernel(RmsNormArgs args) {
  start_after_prior_grids();
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const int64_t token_stride = args.token_stride != 0 ? args.token_stride : args.dim;
  const int64_t base = static_cast<int64_t>(row / args.rows_per_token) * token_stride +
                       static_cast<int64_t>(row % args.rows_per_token) * args.dim;
  float* x = args.x + base;
  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < args.dim; i += blockDim.x) {
    float value = x[i];
    if (args.add != nullptr) {
      value += args.add[base + i];
      x[i] = value;
    }
    sum_squares += value * value;
  }
  sum_squares = block_sum(sum_squares, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.dim) + args.eps);
  for (int i = threadIdx.x; i < args.dim; i += blockDim.x) {
    const float value = x[i] * inv_rms * bf16_bits_to_float(args.weight[i]);
    if (args.out_f32 != nullptr) args.out_f32[base + i] = value;
    if (args.out_bf16 != nullptr) args.out_bf16[static_cast<int64_t>(row) * args.dim + i] = float_to_bf16_bits(value);
  }
}

}  // namespace

void rms_norm(const GpuExec& exec, const RmsNormArgs& args) {
  if (args.rows == 0) return;
  const int threads = args.dim >= 1024 ? 512 : (args.dim >= 256 ? 256 : (args.dim > 64 ? 128 : 64));
  launch_dependent("rms_norm", rms_norm_kernel, args.rows, threads, 0, exec, args);
}

}  // namespace moeserve::cuda
