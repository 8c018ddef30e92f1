// CUDA op: MLA weight absorption (ops::mla_absorb_q, ops::mla_project_v). kv_b [H, dn + dv, r]:
// W_UK^h = rows [0, dn) of head h, W_UV^h = rows [dn, dn + dv). One block per (token, head).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

// q_absorbed[t, h, c] = Σ_d q[t, h, d] · W_UK^h[d, c] for c < r; then the rope part copied.
__global__ void absorb_q_kernel(MlaDims dims, const float* q, const float* kv_b, float* q_absorbed) {
  const int token = blockIdx.x;
  const int head = blockIdx.y;
  const int q_dim = dims.nope + dims.rope;
  const int out_dim = dims.rank + dims.rope;
  const float* qv = q + (static_cast<int64_t>(token) * dims.heads + head) * q_dim;
  const float* w_uk = kv_b + static_cast<int64_t>(head) * (dims.nope + dims.value) * dims.rank;
  float* dst = q_absorbed + (static_cast<int64_t>(token) * dims.heads + head) * out_dim;
  for (int c = threadIdx.x; c < dims.rank; c += blockDim.x) {
    float sum = 0.0f;
    for (int d = 0; d < dims.nope; ++d) sum += qv[d] * w_uk[static_cast<int64_t>(d) * dims.rank + c];
    dst[c] = sum;
  }
  for (int i = threadIdx.x; i < dims.rope; i += blockDim.x) dst[dims.rank + i] = qv[dims.nope + i];
}

// out[t, h, v] = Σ_c latent[t, h, c] · W_UV^h[v, c]: one warp per output element.
__global__ void project_v_kernel(MlaDims dims, const float* latent, const float* kv_b, float* out) {
  const int token = blockIdx.x;
  const int head = blockIdx.y;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const float* lv = latent + (static_cast<int64_t>(token) * dims.heads + head) * dims.rank;
  const float* w_uv = kv_b + (static_cast<int64_t>(head) * (dims.nope + dims.value) + dims.nope) * dims.rank;
  for (int v = warp; v < dims.value; v += blockDim.x >> 5) {
    const float* row = w_uv + static_cast<int64_t>(v) * dims.rank;
    float sum = 0.0f;
    for (int c = lane; c < dims.rank; c += 32) sum += lv[c] * row[c];
    sum = warp_sum(sum);
    if (lane == 0) out[(static_cast<int64_t>(token) * dims.heads + head) * dims.value + v] = sum;
  }
}

}  // namespace

void mla_absorb_q(const GpuExec& exec, const MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) {
  if (dims.tokens == 0) return;
  absorb_q_kernel<<<dim3(dims.tokens, dims.heads), 128, 0, stream_of(exec)>>>(dims, q, kv_b, q_absorbed);
  check_launch("mla_absorb_q");
}

void mla_project_v(const GpuExec& exec, const MlaDims& dims, const float* latent, const float* kv_b, float* out) {
  if (dims.tokens == 0) return;
  project_v_kernel<<<dim3(dims.tokens, dims.heads), 256, 0, stream_of(exec)>>>(dims, latent, kv_b, out);
  check_launch("mla_project_v");
}

}  // namespace moeserve::cuda
