// CUDA op: MLA attention of a prefill piece in its plain (non-absorbed) form, as vLLM and SGLang
// run MLA prefill: the piece's context latents are gathered from the paged cache, expanded into
// per-head keys and values by one float32 GEMM with kv_b, and attended by float32 cuBLAS GEMMs
// batched over heads with a causal softmax between them. The absorbed form (paged_attention
// over 576-wide latent keys, one block per query row and head on CUDA cores) costs
// heads × ctx × (r + dr + r) multiply-adds per query; this one heads × ctx × (dn + dr + dv) on
// the GEMM units, and the K/V expansion once per context row instead of the absorption once
// per query row and head. With tf32 (the bf16 mode) the GEMMs run on the tensor cores in TF32
// (10-bit mantissas, finer than the bf16 inputs of that mode's other GEMMs); without, in float32.
//
//   latent [ctx, r + dr]     = cache rows of the sequence (block table)
//   kv     [ctx, H, dn + dv] = latent[:, :r] · kv_bᵀ            (k_nope | v per head)
//   S_h    [qt, ctx]         = scale · (q_nope_h · k_nope_hᵀ + q_pe_h · k_peᵀ)   per query tile
//   P_h                      = causal softmax of S_h's rows
//   out_h  [qt, dv]          = P_h · v_h
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/cuda/paged_cache.cuh"

namespace moeserve::cuda {

namespace {

// latent[r] [entry] = the first entry elements (float32 or e4m3) of the cache entry ([cache_entry])
// of context row r (block_table[r / block_size], slot r % block_size), as float32, times scale.
template <typename Kv>
__global__ void gather_latents_kernel(const float* cache, int block_size, const int32_t* block_table, int cache_entry,
                                      int entry, int ctx, float scale, float* latent) {
  const int row = blockIdx.x;
  if (row >= ctx) return;
  const int64_t slot = int64_t(block_table[row / block_size]) * block_size + row % block_size;
  const Kv* src = kv_base<Kv>(cache) + slot * cache_entry;
  for (int i = threadIdx.x; i < entry; i += blockDim.x) latent[int64_t(row) * entry + i] = kv_load(src + i) * scale;
}

// Maximum over a block of blockDim.x threads (as block_sum); every thread gets it.
__device__ __forceinline__ float block_max(float value, float* scratch /* [32] shared */) {
  value = warp_max(value);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
  __syncthreads();
  return warp_max((threadIdx.x & 31) < (blockDim.x >> 5) ? scratch[threadIdx.x & 31] : -INFINITY);
}

// scores: H × [qt columns of ctx] (column i: query q0 + i, contiguous over keys). Query i sees
// keys 0 .. first_key_limit + i; its column becomes the softmax probabilities (0 past the limit).
constexpr int kSoftmaxThreads = 256;
__global__ void __launch_bounds__(kSoftmaxThreads) causal_softmax_kernel(float* scores, int ctx, int qt,
                                                                         int first_key_limit) {
  __shared__ float scratch[32];
  const int query = blockIdx.x;
  float* row = scores + (int64_t(blockIdx.y) * qt + query) * ctx;
  const int keys = min(ctx, first_key_limit + query + 1);
  float max_score = -INFINITY;
  for (int k = threadIdx.x; k < keys; k += blockDim.x) max_score = fmaxf(max_score, row[k]);
  max_score = block_max(max_score, scratch);
  float sum = 0.0f;
  for (int k = threadIdx.x; k < keys; k += blockDim.x) {
    const float p = expf(row[k] - max_score);
    row[k] = p;
    sum += p;
  }
  sum = block_sum(sum, scratch);
  const float inv = 1.0f / sum;
  for (int k = threadIdx.x; k < ctx; k += blockDim.x) row[k] = k < keys ? row[k] * inv : 0.0f;
}

void check_blas_status(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: mla_prefill_attention: %s failed: %d\n", what, static_cast<int>(status));
    std::abort();
  }
}

// C = alpha · op(A) · op(B) + beta · C over `batch` strided column-major float32 matrices (cuBLAS's
// argument order), on the tensor cores in TF32 with tf32, else in float32.
void gemm_f32(cublasHandle_t blas, bool tf32, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k,
              float alpha, const float* a, int lda, int64_t stride_a, const float* b, int ldb, int64_t stride_b,
              float beta, float* c, int ldc, int64_t stride_c, int batch, const char* what) {
  check_blas_status(cublasGemmStridedBatchedEx(blas, op_a, op_b, m, n, k, &alpha, a, CUDA_R_32F, lda, stride_a, b,
                                               CUDA_R_32F, ldb, stride_b, &beta, c, CUDA_R_32F, ldc, stride_c, batch,
                                               tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT),
                    what);
}

}  // namespace

size_t mla_prefill_workspace_floats(const MlaDims& dims, int ctx, int query_tile) {
  const size_t entry = dims.rank + dims.rope;
  return size_t(ctx) * entry + size_t(ctx) * dims.heads * (dims.nope + dims.value) +
         size_t(dims.heads) * query_tile * ctx;
}

int mla_prefill_query_tile(const MlaDims& dims, int count, int ctx, size_t score_floats) {
  const size_t per_query = size_t(dims.heads) * std::max(1, ctx);
  return static_cast<int>(std::clamp<size_t>(score_floats / per_query, 1, size_t(std::max(1, count))));
}

void mla_prefill_attention(const GpuExec& exec, const MlaPrefillArgs& args, bool tf32) {
  const MlaDims& d = args.dims;
  const int ctx = args.begin + args.count;
  if (args.count == 0) return;
  const int entry = d.rank + d.rope;
  const int qk = d.nope + d.rope;
  const int kv_width = d.heads * (d.nope + d.value);
  float* latent = args.workspace;
  float* kv = latent + size_t(ctx) * entry;
  float* scores = kv + size_t(ctx) * kv_width;
  const cudaStream_t stream = stream_of(exec);
  auto* blas = static_cast<cublasHandle_t>(exec.blas);
  const int cache_entry = args.entry_size != 0 ? args.entry_size : entry;  // V3.2: the index key follows
  const auto gather = args.cache_fp8 ? gather_latents_kernel<uint8_t> : gather_latents_kernel<float>;
  gather<<<ctx, 128, 0, stream>>>(args.cache, args.block_size, args.block_table, cache_entry, entry, ctx,
                                  args.cache_scale, latent);
  check_launch("mla_prefill_attention (gather)");
  // Column-major: kvᵀ [kv_width, ctx] = kv_b (col-major [r, kv_width])ᵀ · latentᵀ[:r] ([r, ctx], ld entry).
  gemm_f32(blas, tf32, CUBLAS_OP_T, CUBLAS_OP_N, kv_width, ctx, d.rank, 1.0f, args.kv_b, d.rank, 0, latent, entry, 0,
           0.0f, kv, kv_width, 0, 1, "expansion GEMM");
  const int64_t q_row = int64_t(d.heads) * qk;     // floats per query row of q
  const int64_t out_row = int64_t(d.heads) * d.value;
  for (int q0 = 0; q0 < args.count; q0 += args.query_tile) {
    const int qt = std::min(args.query_tile, args.count - q0);
    const float* q = args.q + (args.first_row + q0) * q_row;
    // S_hᵀ [ctx, qt] (ld ctx) = k_nope_h ([dn, ctx], ld kv_width)ᵀ · q_nope_hᵀ ([dn, qt], ld q_row).
    gemm_f32(blas, tf32, CUBLAS_OP_T, CUBLAS_OP_N, ctx, qt, d.nope, args.scale, kv, kv_width, d.nope + d.value, q,
             q_row, qk, 0.0f, scores, ctx, int64_t(ctx) * qt, d.heads, "score GEMM (nope)");
    // += k_pe ([dr, ctx], ld entry, shared by the heads)ᵀ · q_pe_hᵀ.
    gemm_f32(blas, tf32, CUBLAS_OP_T, CUBLAS_OP_N, ctx, qt, d.rope, args.scale, latent + d.rank, entry, 0, q + d.nope,
             q_row, qk, 1.0f, scores, ctx, int64_t(ctx) * qt, d.heads, "score GEMM (rope)");
    causal_softmax_kernel<<<dim3(qt, d.heads), kSoftmaxThreads, 0, stream>>>(scores, ctx, qt, args.begin + q0);
    check_launch("mla_prefill_attention (softmax)");
    // out_hᵀ [dv, qt] (ld out_row) = v_h ([dv, ctx], ld kv_width) · P_hᵀ ([ctx, qt], ld ctx).
    gemm_f32(blas, tf32, CUBLAS_OP_N, CUBLAS_OP_N, d.value, qt, ctx, 1.0f, kv + d.nope, kv_width, d.nope + d.value,
             scores, ctx, int64_t(ctx) * qt, 0.0f, args.out + (args.first_row + q0) * out_row, out_row, d.value,
             d.heads, "value GEMM");
  }
}

}  // namespace moeserve::cuda
