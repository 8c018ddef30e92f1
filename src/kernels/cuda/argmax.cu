// CUDA op: greedy choice per row (argmax_token on the device): out[r] = the first index of the
// largest value of x[r, :]. One block per row; NaN never wins (as on the host, unless it is the
// row's first element, which the host keeps and this kernel skips). Lets a greedy decode step
// copy back one id per sequence instead of its whole logits row.
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kBatch = 8;  // float4s a thread loads before comparing any (a decode step's argmax is one block)

__device__ __forceinline__ bool better(float value, int index, float best, int best_index) {
  return value > best || (value == best && index < best_index);
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* x, int64_t width, bool vector, int32_t* out) {
  start_after_prior_grids();
  __shared__ float values[kThreads / 32];
  __shared__ int indices[kThreads / 32];
  const float* row = x + blockIdx.x * width;
  float best = -INFINITY;
  int best_index = static_cast<int>(width);  // past the end: loses every tie
  auto consider = [&](float value, int index) {
    if (better(value, index, best, best_index)) {
      best = value;
      best_index = index;
    }
  };
  if (vector) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    const int vectors = static_cast<int>(width / 4);
    for (int base = threadIdx.x; base < vectors; base += kBatch * kThreads) {
      float4 v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (base + u * kThreads < vectors) v[u] = row4[base + u * kThreads];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = 4 * (base + u * kThreads);
        if (i >= width) break;
        consider(v[u].x, i);
        consider(v[u].y, i + 1);
        consider(v[u].z, i + 2);
        consider(v[u].w, i + 3);
      }
    }
  } else {
    for (int i = threadIdx.x; i < width; i += kThreads) consider(row[i], i);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (better(other, other_index, best, best_index)) {
      best = other;
      best_index = other_index;
    }
  }
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    values[warp] = best;
    indices[warp] = best_index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      if (better(values[w], indices[w], best, best_index)) {
        best = values[w];
        best_index = indices[w];
      }
    }
    out[blockIdx.x] = best_index < width ? best_index : 0;  // a row of NaN / -inf only: 0
  }
}

}  // namespace

void argmax_rows(const GpuExec& exec, const float* x, int rows, int64_t width, int32_t* out) {
  if (rows == 0) return;
  const bool vector = width % 4 == 0 && aligned(x, 16);
  launch_dependent("argmax_rows", argmax_kernel, rows, kThreads, 0, exec, x, width, vector, out);
}

}  // namespace moeserve::cuda
