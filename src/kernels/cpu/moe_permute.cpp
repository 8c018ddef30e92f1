// CPU reference: the MoE dispatch/combine primitives — gather the rows routed to one expert,
// and add the expert's weighted outputs back into their rows.
#include <cstring>

#include "kernels/ops.h"

namespace moeserve::ops {

void gather_rows(ExecContext& ctx, const TensorView& x, std::span<const int32_t> rows, const TensorView& out) {
  const int64_t width = x.dim(1);
  MS_CHECK(out.dim(0) == static_cast<int64_t>(rows.size()) && out.dim(1) == width);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.as<float>() + i * width, x.as<float>() + rows[i] * width, width * sizeof(float));
  }
}

void scatter_add_rows(ExecContext& ctx, const TensorView& y, std::span<const int32_t> rows,
                      std::span<const float> weights, const TensorView& out) {
  const int64_t width = y.dim(1);
  MS_CHECK(y.dim(0) == static_cast<int64_t>(rows.size()) && out.dim(1) == width);
  for (size_t i = 0; i < rows.size(); ++i) {
    float* dst = out.as<float>() + rows[i] * width;
    const float* src = y.as<float>() + i * width;
    for (int64_t d = 0; d < width; ++d) dst[d] += weights[i] * src[d];
  }
}

}  // namespace moeserve::ops
