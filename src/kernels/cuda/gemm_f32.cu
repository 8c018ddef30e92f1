// CUDA op: float32 GEMM through cuBLAS (ops::linear in float32 for prefill-sized batches whose
// results must stay float32: the MoE router, whose top-k flips on rounded inputs). Default math
// mode: true float32 products, no TF32.
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

// out [m, n] ← bias broadcast over the rows (cuBLAS then adds the product to it).
__global__ void broadcast_bias_kernel(const float* bias, int64_t count, int n, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bias[i % n];
}

}  // namespace

// Row-major out[m, n] = x[m, k] · W[n, k]ᵀ is column-major outᵀ[n, m] = (W as [k, n])ᵀ · xᵀ.
void gemm_f32(const GpuExec& exec, const float* x, const float* weight, int m, int n, int k, float* out,
              const float* bias) {
  if (m == 0 || n == 0) return;
  const float one = 1.0f, zero = 0.0f;
  if (bias != nullptr) {
    const int64_t count = int64_t(m) * n;
    broadcast_bias_kernel<<<static_cast<int>(std::min<int64_t>(1024, (count + 255) / 256)), 256, 0,
                            stream_of(exec)>>>(bias, count, n, out);
    check_launch("gemm_f32 bias");
  }
  const cublasStatus_t status = cublasSgemm(static_cast<cublasHandle_t>(exec.blas), CUBLAS_OP_T, CUBLAS_OP_N, n, m,
                                            k, &one, weight, k, x, k, bias != nullptr ? &one : &zero, out, n);
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: cublasSgemm (m=%d n=%d k=%d) failed: %d\n", m, n, k, static_cast<int>(status));
    std::abort();
  }
}

}  // namespace moeserve::cuda
