// CUDA op: float32 GEMM through cuBLAS (ops::linear in float32 for prefill-sized batches whose
// results must stay float32: the MoE router, whose top-k flips on rounded inputs). Default math
// mode: true float32 products, no TF32.
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

// Row-major out[m, n] = x[m, k] · W[n, k]ᵀ is column-major outᵀ[n, m] = (W as [k, n])ᵀ · xᵀ.
void gemm_f32(const GpuExec& exec, const float* x, const float* weight, int m, int n, int k, float* out) {
  if (m == 0 || n == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t status = cublasSgemm(static_cast<cublasHandle_t>(exec.blas), CUBLAS_OP_T, CUBLAS_OP_N, n, m,
                                            k, &one, weight, k, x, k, &zero, out, n);
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: cublasSgemm (m=%d n=%d k=%d) failed: %d\n", m, n, k, static_cast<int>(status));
    std::abort();
  }
}

}  // namespace moeserve::cuda
