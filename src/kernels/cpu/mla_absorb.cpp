// CPU reference: MLA weight absorption. kv_b_proj.weight viewed as [H, dn + dv, r]:
// W_UK^h = rows [0, dn) of head h, W_UV^h = rows [dn, dn + dv). One strided GEMM per head.
#include <cstring>

#include "kernels/cpu/blas.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void mla_absorb_q(ExecContext& ctx, const TensorView& q, const TensorView& kv_b, int qk_nope_head_dim,
                  int v_head_dim, const TensorView& q_absorbed) {
  const int64_t tokens = q.dim(0);
  const int64_t heads = q.dim(1);
  const int64_t q_dim = q.dim(2);
  const int64_t rope_dim = q_dim - qk_nope_head_dim;
  const int64_t latent = kv_b.dim(1);
  MS_CHECK(kv_b.dtype == DType::kF32 && q_absorbed.dim(2) == latent + rope_dim);
  const int64_t out_stride = heads * (latent + rope_dim);
  use_single_threaded_blas();
  ctx.pool->parallel_for(heads, 1, [&](size_t begin, size_t end) {
    for (size_t head = begin; head < end; ++head) {
      const float* w_uk = kv_b.as<float>() + head * (qk_nope_head_dim + v_head_dim) * latent;
      float* dst = q_absorbed.as<float>() + head * (latent + rope_dim);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, latent, qk_nope_head_dim, 1.0f,
                  q.as<float>() + head * q_dim, heads * q_dim, w_uk, latent, 0.0f, dst, out_stride);
      for (int64_t t = 0; t < tokens; ++t) {
        std::memcpy(dst + t * out_stride + latent, q.as<float>() + (t * heads + head) * q_dim + qk_nope_head_dim,
                    rope_dim * sizeof(float));
      }
    }
  });
}

void mla_project_v(ExecContext& ctx, const TensorView& latent, const TensorView& kv_b, int qk_nope_head_dim,
                   int v_head_dim, const TensorView& out) {
  const int64_t tokens = latent.dim(0);
  const int64_t heads = latent.dim(1);
  const int64_t rank = latent.dim(2);
  MS_CHECK(kv_b.dtype == DType::kF32 && kv_b.dim(1) == rank && out.dim(2) == v_head_dim);
  use_single_threaded_blas();
  ctx.pool->parallel_for(heads, 1, [&](size_t begin, size_t end) {
    for (size_t head = begin; head < end; ++head) {
      const float* w_uv = kv_b.as<float>() + (head * (qk_nope_head_dim + v_head_dim) + qk_nope_head_dim) * rank;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, v_head_dim, rank, 1.0f,
                  latent.as<float>() + head * rank, heads * rank, w_uv, rank, 0.0f,
                  out.as<float>() + head * v_head_dim, heads * v_head_dim);
    }
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

void mla_absorb_q(ExecContext& ctx, const MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) {
  const auto d = [](int value) { return static_cast<int64_t>(value); };
  mla_absorb_q(ctx, TensorView{const_cast<float*>(q), DType::kF32, Shape{d(dims.tokens), d(dims.heads), d(dims.nope + dims.rope)}},
               TensorView{const_cast<float*>(kv_b), DType::kF32, Shape{d(dims.heads) * (dims.nope + dims.value), d(dims.rank)}},
               dims.nope, dims.value,
               TensorView{q_absorbed, DType::kF32, Shape{d(dims.tokens), d(dims.heads), d(dims.rank + dims.rope)}});
}

void mla_project_v(ExecContext& ctx, const MlaDims& dims, const float* latent, const float* kv_b, float* out) {
  const auto d = [](int value) { return static_cast<int64_t>(value); };
  mla_project_v(ctx, TensorView{const_cast<float*>(latent), DType::kF32, Shape{d(dims.tokens), d(dims.heads), d(dims.rank)}},
                TensorView{const_cast<float*>(kv_b), DType::kF32, Shape{d(dims.heads) * (dims.nope + dims.value), d(dims.rank)}},
                dims.nope, dims.value, TensorView{out, DType::kF32, Shape{d(dims.tokens), d(dims.heads), d(dims.value)}});
}

}  // namespace moeserve::ops
