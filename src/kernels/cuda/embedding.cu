// CUDA op: token embedding lookup from a bf16 table into float32 rows (ops::embedding).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void embedding_kernel(const uint16_t* table, int hidden, const int32_t* ids, float* out) {
  start_after_prior_grids();
  const int token = blockIdx.x;
  const uint16_t* row = table + static_cast<int64_t>(ids[token]) * hidden;
  float* dst = out + static_cast<int64_t>(token) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = bf16_bits_to_float(row[i]);
}

}  // namespace

void embedding(const GpuExec& exec, const uint16_t* table, int hidden, const int32_t* ids, int tokens, float* out) {
  if (tokens == 0) return;
  launch_dependent("embedding", embedding_kernel, tokens, 256, 0, exec, table, hidden, ids, out);
}

}  // namespace moeserve::cuda
