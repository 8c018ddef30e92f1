// CPU reference: RMSNorm in float32 (HF: x * rsqrt(mean(x²) + eps), then × weight), and its step
// form with the residual add (of split-K partial sums) fused in front.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/step_views.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void rms_norm(ExecContext& ctx, const TensorView& x, const TensorView& weight, float eps, const TensorView& out) {
  const int64_t dim = weight.numel();
  const int64_t rows = x.numel() / dim;
  MS_CHECK(x.numel() == rows * dim && out.numel() == x.numel());
  std::vector<float> gamma(dim);
  convert_to_f32(weight.dtype, weight.data, gamma.data(), dim);
  ctx.pool->parallel_for(rows, 32, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const float* in = x.as<float>() + row * dim;
      float* dst = out.as<float>() + row * dim;
      float sum_squares = 0.0f;
      for (int64_t i = 0; i < dim; ++i) sum_squares += in[i] * in[i];
      const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) dst[i] = in[i] * inv_rms * gamma[i];
    }
  });
}

void add_inplace(ExecContext& ctx, const TensorView& x, const TensorView& y) {
  MS_CHECK(x.numel() == y.numel());
  float* dst = x.as<float>();
  const float* src = y.as<float>();
  ctx.pool->parallel_for(x.numel(), 4096, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) dst[i] += src[i];
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

// The step form: the rows (strided inside wider token rows) gathered into one dense [rows, dim]
// tensor, the split sums of add added (add_inplace), the tensor-op norm over all rows at once,
// and the results written back to the rows' places.
void rms_norm(ExecContext& ctx, const RmsNormArgs& args) {
  const int per_token = args.rows_per_token;
  MS_CHECK(per_token > 0 && args.rows % per_token == 0);
  MS_CHECK(per_token == 1 || args.token_stride != 0);
  const int tokens = args.rows / per_token;
  const int64_t width = static_cast<int64_t>(per_token) * args.dim;  // one token's rows
  const int64_t token_stride = args.token_stride != 0 ? args.token_stride : args.dim;
  const int64_t count = static_cast<int64_t>(tokens) * width;
  // dense[t · width + i] ↔ base[t · token_stride + i]
  auto gather = [&](const float* base, float* dense) {
    for (int t = 0; t < tokens; ++t) std::copy(base + t * token_stride, base + t * token_stride + width, dense + t * width);
  };
  auto scatter = [&](const float* dense, float* base) {
    for (int t = 0; t < tokens; ++t) std::copy(dense + t * width, dense + (t + 1) * width, base + t * token_stride);
  };
  std::vector<float> x(count), normed(count);
  gather(args.x, x.data());
  if (args.add != nullptr) {
    std::vector<float> sum(count, 0.0f), slice(count);  // Σ_s add slices, in split order
    for (int s = 0; s < args.add_splits; ++s) {
      gather(args.add + s * args.add_split_stride, slice.data());
      for (int64_t i = 0; i < count; ++i) sum[i] += slice[i];
    }
    add_inplace(ctx, f32_matrix(x.data(), args.rows, args.dim), f32_matrix(sum.data(), args.rows, args.dim));
    scatter(x.data(), args.x);
  }
  rms_norm(ctx, f32_matrix(x.data(), args.rows, args.dim), weight_vector(args.weight, args.weight_f32, args.dim),
           args.eps, f32_matrix(normed.data(), args.rows, args.dim));
  if (args.out_f32 != nullptr) scatter(normed.data(), args.out_f32);
  if (args.out_bf16 != nullptr) {
    for (int64_t i = 0; i < count; ++i) args.out_bf16[i] = f32_to_bf16(normed[i]);
  }
}

}  // namespace moeserve::ops
