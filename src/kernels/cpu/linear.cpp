// CPU reference: out = x · Wᵀ (+ b). Weights stay in their stored dtype (usually bf16 in the
// checkpoint's mmap); each worker converts a panel of kPanelRows weight rows to float32 in a
// local buffer and multiplies it with OpenBLAS, so no float32 copy of the model ever exists.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/ops.h"

namespace moeserve::ops {

namespace {
constexpr int64_t kPanelRows = 64;
}  // namespace

void linear(ExecContext& ctx, const TensorView& x, const TensorView& weight, const TensorView& bias,
            const TensorView& out) {
  const int64_t tokens = x.dim(0);
  const int64_t in_features = x.dim(1);
  const int64_t out_features = weight.dim(0);
  MS_CHECK(weight.dim(1) == in_features && out.dim(0) == tokens && out.dim(1) == out_features);
  if (tokens == 0) return;
  use_single_threaded_blas();
  const size_t elem = dtype_size(weight.dtype);
  const int64_t panels = (out_features + kPanelRows - 1) / kPanelRows;
  std::vector<float> bias_f32;
  if (bias.data != nullptr) {
    bias_f32.resize(out_features);
    convert_to_f32(bias.dtype, bias.data, bias_f32.data(), out_features);
  }
  ctx.pool->parallel_for(panels, 1, [&](size_t begin, size_t end) {
    std::vector<float> panel(kPanelRows * in_features);
    for (size_t panel_idx = begin; panel_idx < end; ++panel_idx) {
      const int64_t row0 = static_cast<int64_t>(panel_idx) * kPanelRows;
      const int64_t rows = std::min(kPanelRows, out_features - row0);
      convert_to_f32(weight.dtype, static_cast<const char*>(weight.data) + row0 * in_features * elem, panel.data(),
                     rows * in_features);
      float* dst = out.as<float>() + row0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, rows, in_features, 1.0f, x.as<float>(),
                  in_features, panel.data(), in_features, 0.0f, dst, out_features);
      if (!bias_f32.empty()) {
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t n = 0; n < rows; ++n) dst[t * out_features + n] += bias_f32[row0 + n];
        }
      }
    }
  });
}

}  // namespace moeserve::ops
