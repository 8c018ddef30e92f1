// CUDA op: MLA weight absorption (ops::mla_absorb_q, ops::mla_project_v). kv_b [H, dn + dv, r]:
// W_UK^h = rows [0, dn) of head h, W_UV^h = rows [dn, dn + dv). Both are float32 GEMMs batched
// over the heads (cuBLAS; exact float32, graph-capturable with the stream's workspace): a decode
// step's T × H products of a [dn] or [r] row with a [dn, r] matrix run as H GEMMs of T rows that
// stream each head's weights once, where one block per (token, head) walking the weights with a
// few loads in flight took ~75 µs a layer at one token (DeepSeek-V2-Lite, H200).
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

void check_blas_status(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: %s: cuBLAS failed: %d\n", what, static_cast<int>(status));
    std::abort();
  }
}

}  // namespace

// q [T, H, dn + dr] → q_absorbed [T, H, r + dr]: [:r] = q_nope · W_UK^h, [r:] = q_pe copied.
void mla_absorb_q(const GpuExec& exec, const MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) {
  if (dims.tokens == 0) return;
  const int q_dim = dims.nope + dims.rope;
  const int out_dim = dims.rank + dims.rope;
  const float one = 1.0f, zero = 0.0f;
  // Column-major per head: outᵀ [r, T] (ld H·out_dim) = W_UK^h ([r, dn] as stored, ld r) · q_nopeᵀ ([dn, T], ld H·q_dim).
  check_blas_status(cublasSgemmStridedBatched(static_cast<cublasHandle_t>(exec.blas), CUBLAS_OP_N, CUBLAS_OP_N,
                                              dims.rank, dims.tokens, dims.nope, &one, kv_b, dims.rank,
                                              int64_t(dims.nope + dims.value) * dims.rank, q,
                                              int64_t(dims.heads) * q_dim, q_dim, &zero, q_absorbed,
                                              int64_t(dims.heads) * out_dim, out_dim, dims.heads),
                    "mla_absorb_q");
  const cudaError_t copied =
      cudaMemcpy2DAsync(q_absorbed + dims.rank, out_dim * sizeof(float), q + dims.nope, q_dim * sizeof(float),
                        dims.rope * sizeof(float), size_t(dims.tokens) * dims.heads, cudaMemcpyDeviceToDevice,
                        stream_of(exec));
  if (copied != cudaSuccess) {
    std::fprintf(stderr, "moeserve: mla_absorb_q: rope copy failed: %s\n", cudaGetErrorString(copied));
    std::abort();
  }
}

// latent [T, H, r] → out [T, H, dv] = latent · W_UV^hᵀ.
void mla_project_v(const GpuExec& exec, const MlaDims& dims, const float* latent, const float* kv_b, float* out) {
  if (dims.tokens == 0) return;
  const float one = 1.0f, zero = 0.0f;
  // Column-major per head: outᵀ [dv, T] (ld H·dv) = (W_UV^h as stored [r, dv], ld r)ᵀ · latentᵀ ([r, T], ld H·r).
  check_blas_status(cublasSgemmStridedBatched(static_cast<cublasHandle_t>(exec.blas), CUBLAS_OP_T, CUBLAS_OP_N,
                                              dims.value, dims.tokens, dims.rank, &one,
                                              kv_b + int64_t(dims.nope) * dims.rank, dims.rank,
                                              int64_t(dims.nope + dims.value) * dims.rank, latent,
                                              int64_t(dims.heads) * dims.rank, dims.rank, &zero, out,
                                              int64_t(dims.heads) * dims.value, dims.value, dims.heads),
                    "mla_project_v");
}

}  // namespace moeserve::cuda
