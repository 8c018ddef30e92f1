// CUDA op: LayerNorm (ops::layer_norm: torch.nn.LayerNorm, biased variance) of strided rows, one
// warp per row, float32 statistics in two passes (mean, then the variance of x - mean).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kRowsPerBlock = 4;

__global__ void layer_norm_kernel(LayerNormArgs args) {
  start_after_prior_grids();
  const int row = blockIdx.x * kRowsPerBlock + static_cast<int>(threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= args.rows) return;
  const int64_t stride = args.stride != 0 ? args.stride : args.dim;
  const float* x = args.x + row * stride;
  float* out = args.out + row * stride;
  float sum = 0.0f;
  for (int i = lane; i < args.dim; i += 32) sum += x[i];
  const float mean = warp_sum(sum) / static_cast<float>(args.dim);
  float squares = 0.0f;
  for (int i = lane; i < args.dim; i += 32) squares += (x[i] - mean) * (x[i] - mean);
  const float inv_std = rsqrtf(warp_sum(squares) / static_cast<float>(args.dim) + args.eps);
  __syncwarp();  // every lane has read its x before any writes out (out may equal x)
  for (int i = lane; i < args.dim; i += 32) out[i] = (x[i] - mean) * inv_std * args.weight[i] + args.bias[i];
}

}  // namespace

void layer_norm(const GpuExec& exec, const LayerNormArgs& args) {
  if (args.rows == 0) return;
  launch_dependent("layer_norm", layer_norm_kernel, dim3((args.rows + kRowsPerBlock - 1) / kRowsPerBlock),
                   dim3(kRowsPerBlock * 32), 0, exec, args);
}

}  // namespace moeserve::cuda
