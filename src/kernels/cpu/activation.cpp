// CPU reference: SwiGLU's elementwise part, silu(gate) * up or GPT-OSS's clamped variant (and the
// step form over [gate | up] rows).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

void silu_mul(ExecContext& ctx, const TensorView& gate, const TensorView& up, const TensorView& out,
              const GluParams& glu) {
  MS_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel());
  const float* g = gate.as<float>();
  const float* u = up.as<float>();
  float* dst = out.as<float>();
  ctx.pool->parallel_for(gate.numel(), 4096, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      if (!glu.clamped) {
        dst[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        continue;
      }
      const float clamped_gate = std::min(g[i], glu.limit);
      const float clamped_up = std::clamp(u[i], -glu.limit, glu.limit);
      dst[i] = (clamped_up + 1.0f) * (clamped_gate / (1.0f + std::exp(-glu.alpha * clamped_gate)));
    }
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

void silu_mul(ExecContext& ctx, const float* gate_up, int rows, int intermediate, float* out_f32, uint16_t* out_bf16,
              const GluParams& glu) {
  const int64_t width = intermediate;
  std::vector<float> out(static_cast<size_t>(rows) * width);
  for (int r = 0; r < rows; ++r) {
    const float* row = gate_up + r * 2 * width;
    const TensorView gate{const_cast<float*>(row), DType::kF32, Shape{1, width}};
    const TensorView up{const_cast<float*>(row + width), DType::kF32, Shape{1, width}};
    silu_mul(ctx, gate, up, TensorView{out.data() + r * width, DType::kF32, Shape{1, width}}, glu);
  }
  if (out_f32 != nullptr) std::copy(out.begin(), out.end(), out_f32);
  if (out_bf16 != nullptr) {
    for (size_t i = 0; i < out.size(); ++i) out_bf16[i] = f32_to_bf16(out[i]);
  }
}

}  // namespace moeserve::ops
