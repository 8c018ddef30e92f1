// CUDA op: dense projection through cuBLAS for prefill-sized batches (ops::linear for many
// rows): bf16 activations and weights, float32 accumulation, float32 output then the bias, or
// bf16 output.
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void add_bias_kernel(float* out, int64_t count, int n, const uint16_t* bias) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] += bf16_bits_to_float(bias[i % n]);
  }
}

// Row-major out[m, n] = x[m, k] · W[n, k]ᵀ is column-major outᵀ[n, m] = Wᵀᵀ · xᵀ.
void cublas_gemm(const GpuExec& exec, const uint16_t* x, const uint16_t* weight, int m, int n, int k, void* out,
                 cudaDataType_t out_type, float beta) {
  const float alpha = 1.0f;
  const cublasStatus_t status = cublasGemmEx(static_cast<cublasHandle_t>(exec.blas), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k,
                                             &alpha, weight, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, out, out_type,
                                             n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: cublasGemmEx (m=%d n=%d k=%d) failed: %d\n", m, n, k, static_cast<int>(status));
    std::abort();
  }
}

}  // namespace

void gemm_bf16(const GpuExec& exec, const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int m, int n,
               int k, float* out, bool accumulate) {
  if (m == 0 || n == 0) return;
  cublas_gemm(exec, x, weight, m, n, k, out, CUDA_R_32F, accumulate ? 1.0f : 0.0f);
  if (bias != nullptr) {
    const int64_t count = static_cast<int64_t>(m) * n;
    const int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 65536));
    add_bias_kernel<<<blocks, 256, 0, stream_of(exec)>>>(out, count, n, bias);
    check_launch("add_bias");
  }
}

void gemm_bf16(const GpuExec& exec, const uint16_t* x, const uint16_t* weight, int m, int n, int k, uint16_t* out) {
  if (m == 0 || n == 0) return;
  cublas_gemm(exec, x, weight, m, n, k, out, CUDA_R_16BF, 0.0f);
}

}  // namespace moeserve::cuda
