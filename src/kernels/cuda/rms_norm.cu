// CUDA op: fused residual add + RMSNorm (ops::add_inplace followed by ops::rms_norm), one block
// per row, float32 statistics; also the plain in-place norm of per-head q/k and MLA latents. The
// added branch may come as a split-K GEMM's partial sums, added up here in split order.
// Rows of float4-aligned widths up to kMaxVectors float4s per thread are kept in registers
// between the two passes and loaded all at once (a decode step's norm is one block, so its time
// is its chain of dependent loads); other rows go element by element.
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kMaxVectors = 4;


// kSplits: how many slices of `add` the vector path may have to add up (1 or kMaxFusedSplits; the
// register arrays for them are sized by it).
template <bool kVector, int kSplits>
__global__ void rms_norm_kernel(RmsNormArgs args) {
  start_after_prior_grids();
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const int64_t token_stride = args.token_stride != 0 ? args.token_stride : args.dim;
  const int64_t base = static_cast<int64_t>(row / args.rows_per_token) * token_stride +
                       static_cast<int64_t>(row % args.rows_per_token) * args.dim;
  float* x = args.x + base;
  const int64_t out_base = static_cast<int64_t>(row) * args.dim;  // out_bf16 is dense
  float sum_squares = 0.0f;
  if constexpr (kVector) {
    float4* x4 = reinterpret_cast<float4*>(x);
    const float4* add4 = args.add != nullptr ? reinterpret_cast<const float4*>(args.add + base) : nullptr;
    const int vectors = args.dim / 4;
    float4 v[kMaxVectors];
    float4 add[kMaxVectors][kSplits];
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i >= vectors) break;
      v[j] = x4[i];
#pragma unroll
      for (int s = 0; s < kSplits; ++s)
        if (add4 != nullptr && s < args.add_splits) add[j][s] = add4[s * (args.add_split_stride / 4) + i];
    }
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i >= vectors || add4 == nullptr) break;
      float4 sum = add[j][0];
#pragma unroll
      for (int s = 1; s < kSplits; ++s)
        if (s < args.add_splits) sum = sum + add[j][s];
      v[j] = v[j] + sum;
    }
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i >= vectors) break;
      if (add4 != nullptr) x4[i] = v[j];
      sum_squares += sum_of_squares(v[j]);
    }
    sum_squares = block_sum(sum_squares, scratch);
    const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.dim) + args.eps);
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * blockDim.x;
      if (i >= vectors) break;
      store_normed(v[j], inv_rms, args.weight, i, args.out_f32 != nullptr ? args.out_f32 + base : nullptr,
                   args.out_bf16 != nullptr ? args.out_bf16 + out_base : nullptr);
    }
    return;
  }
  for (int i = threadIdx.x; i < args.dim; i += blockDim.x) {
    float value = x[i];
    if (args.add != nullptr) {
      float add = args.add[base + i];
      for (int s = 1; s < args.add_splits; ++s) add += args.add[s * args.add_split_stride + base + i];
      value += add;
      x[i] = value;
    }
    sum_squares += value * value;
  }
  sum_squares = block_sum(sum_squares, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.dim) + args.eps);
  for (int i = threadIdx.x; i < args.dim; i += blockDim.x) {
    const float value = x[i] * inv_rms * bf16_bits_to_float(args.weight[i]);
    if (args.out_f32 != nullptr) args.out_f32[base + i] = value;
    if (args.out_bf16 != nullptr) args.out_bf16[out_base + i] = float_to_bf16_bits(value);
  }
}

}  // namespace

void rms_norm(const GpuExec& exec, const RmsNormArgs& args) {
  if (args.rows == 0) return;
  if (args.add_splits < 1 || args.add_splits > kMaxFusedSplits) {
    std::fprintf(stderr, "moeserve: rms_norm: %d add splits (at most %d)\n", args.add_splits, kMaxFusedSplits);
    std::abort();
  }
  const int threads = args.dim >= 1024 ? 512 : (args.dim >= 256 ? 256 : (args.dim > 64 ? 128 : 64));
  const bool vector = args.dim % 4 == 0 && args.token_stride % 4 == 0 && args.add_split_stride % 4 == 0 &&
                      args.dim / 4 <= threads * kMaxVectors &&
                      aligned(args.x, 16) && aligned(args.add, 16) && aligned(args.out_f32, 16) &&
                      aligned(args.out_bf16, 8) && aligned(args.weight, 8);
  if (vector && args.add_splits > 1) {
    launch_dependent("rms_norm", rms_norm_kernel<true, kMaxFusedSplits>, args.rows, threads, 0, exec, args);
  } else if (vector) {
    launch_dependent("rms_norm", rms_norm_kernel<true, 1>, args.rows, threads, 0, exec, args);
  } else {
    launch_dependent("rms_norm", rms_norm_kernel<false, 1>, args.rows, threads, 0, exec, args);
  }
}

}  // namespace moeserve::cuda
