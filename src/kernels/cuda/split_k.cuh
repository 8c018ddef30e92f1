// Split K for the streaming GEMMs (mma_gemm, small_gemm) whose grid would leave SMs idle: each
// of `splits` blocks per output tile sums one range of K chunks into its own partial sums
// partial[split][row][feature] (split 0 adding the bias), and sum_partials adds them in a fixed
// split order, so results are deterministic.
#pragma once

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

// Rows the partial sums hold: all of x's (grouped: total_rows).
inline int partial_rows(const GemmArgs& args) {
  return args.offsets != nullptr ? args.total_rows : args.rows;
}

// Splits for a grid of `blocks` blocks over `chunks` chunks of K: enough blocks for ~4 per SM
// of a 132-SM GPU, each split at least 4 chunks (every split gets at least one).
inline int k_split_count(int64_t blocks, int chunks) {
  const int wanted = static_cast<int>(std::min<int64_t>(8, (528 + blocks - 1) / blocks));
  const int splits = std::min(wanted, std::max(1, chunks / 4));
  if (splits <= 1) return 1;
  return ceil_div(chunks, ceil_div(chunks, splits));
}

namespace {

__global__ void sum_partials_kernel(const float* partial, int splits, int64_t count, float* out) {
  start_after_prior_grids();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += partial[s * count + i];  // fixed order: deterministic
    out[i] = sum;
  }
}

}  // namespace

// out [count] = Σ_split partial[split] (split 0's sums hold the GEMM's bias).
inline void sum_partials(const GpuExec& exec, const float* partial, int splits, int64_t count, float* out) {
  const int blocks = static_cast<int>(std::min<int64_t>(1024, (count + 255) / 256));
  launch_dependent("sum of K splits", sum_partials_kernel, blocks, 256, 0, exec, partial, splits, count, out);
}

}  // namespace moeserve::cuda
