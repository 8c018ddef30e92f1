// CPU reference: SwiGLU's elementwise part, silu(gate) * up.
#include <cmath>

#include "kernels/ops.h"

namespace moeserve::ops {

void silu_mul(ExecContext& ctx, const TensorView& gate, const TensorView& up, const TensorView& out) {
  MS_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel());
  const float* g = gate.as<float>();
  const float* u = up.as<float>();
  float* dst = out.as<float>();
  ctx.pool->parallel_for(gate.numel(), 4096, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) dst[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  });
}

}  // namespace moeserve::ops
