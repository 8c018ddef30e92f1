// CPU reference: LayerNorm as torch.nn.LayerNorm computes it (mean, then the biased variance of
// x - mean, both over the row), in float32 with double sums.
#include <cmath>

#include "kernels/ops.h"

namespace moeserve::ops {

void layer_norm(ExecContext& ctx, const LayerNormArgs& args) {
  const int64_t stride = args.stride != 0 ? args.stride : args.dim;
  ctx.pool->parallel_for(args.rows, 32, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const float* in = args.x + static_cast<int64_t>(row) * stride;
      float* dst = args.out + static_cast<int64_t>(row) * stride;
      double sum = 0.0;
      for (int i = 0; i < args.dim; ++i) sum += in[i];
      const float mean = static_cast<float>(sum / args.dim);
      double squares = 0.0;
      for (int i = 0; i < args.dim; ++i) squares += static_cast<double>(in[i] - mean) * (in[i] - mean);
      const float inv_std = 1.0f / std::sqrt(static_cast<float>(squares / args.dim) + args.eps);
      for (int i = 0; i < args.dim; ++i) dst[i] = (in[i] - mean) * inv_std * args.weight[i] + args.bias[i];
    }
  });
}

}  // namespace moeserve::ops
