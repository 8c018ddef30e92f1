// CPU reference: RMSNorm in float32 (HF: x * rsqrt(mean(x²) + eps), then × weight).
#include <cmath>
#include <vector>

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
