// CUDA op: token embedding lookup from a bf16 table into float32 rows (ops::embedding).
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

// vector: hidden % 4 == 0 and aligned rows, read as 4 bf16 at a time, kBatch loaded per thread
// before any is stored (a decode step's embedding is one block per token).
constexpr int kBatch = 4;
__global__ void embedding_kernel(const uint16_t* table, int hidden, const int32_t* ids, float* out, bool vector) {
  start_after_prior_grids();
  const int token = blockIdx.x;
  const uint16_t* row = table + static_cast<int64_t>(ids[token]) * hidden;
  float* dst = out + static_cast<int64_t>(token) * hidden;
  if (vector) {
    const int vectors = hidden / 4;
    for (int base = threadIdx.x; base < vectors; base += kBatch * blockDim.x) {
      uint2 w[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (base + u * blockDim.x < vectors) w[u] = reinterpret_cast<const uint2*>(row)[base + u * blockDim.x];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = base + u * blockDim.x;
        if (i >= vectors) break;
        reinterpret_cast<float4*>(dst)[i] = from_bf16x4(w[u]);
      }
    }
    return;
  }
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = bf16_bits_to_float(row[i]);
}

}  // namespace

void embedding(const GpuExec& exec, const uint16_t* table, int hidden, const int32_t* ids, int tokens, float* out) {
  if (tokens == 0) return;
  const bool vector = hidden % 4 == 0 && aligned(table, 8) && aligned(out, 16);
  launch_dependent("embedding", embedding_kernel, tokens, 256, 0, exec, table, hidden, ids, out, vector);
}

}  // namespace moeserve::cuda
