// CUDA op: write this batch's cache entries (GQA [K | V], MLA [c | k_pe]) into their paged-cache
// slots (ops::kv_write; the host turns block tables into one slot per token).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void kv_write_kernel(float* cache, int entry_size, const int32_t* slots, const float* src,
                                int64_t src_stride) {
  start_after_prior_grids();
  const int token = blockIdx.x;
  float* dst = cache + static_cast<int64_t>(slots[token]) * entry_size;
  const float* row = src + static_cast<int64_t>(token) * src_stride;
  for (int i = threadIdx.x; i < entry_size; i += blockDim.x) dst[i] = row[i];
}

}  // namespace

void kv_write(const GpuExec& exec, float* cache, int entry_size, const int32_t* slots, int tokens, const float* src,
              int64_t src_stride) {
  if (tokens == 0) return;
  launch_dependent("kv_write", kv_write_kernel, tokens, 128, 0, exec, cache, entry_size, slots, src, src_stride);
}

}  // namespace moeserve::cuda
