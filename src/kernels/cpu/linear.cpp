// CPU reference: out = x · Wᵀ (+ b). Weights stay in their stored dtype (usually bf16 in the
// checkpoint's mmap); each worker converts a panel of kPanelRows weight rows to float32 in a
// local buffer and multiplies it with OpenBLAS, so no float32 copy of the model ever exists.
// Block-scaled fp8 weights are dequantized exactly in the same panel (fp8 · scale in float32, as
// transformers dequantizes them), after the input is optionally put through the GPU's FP8
// activation quantization.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/ops.h"

namespace moeserve::ops {

namespace {
constexpr int64_t kPanelRows = 64;
}  // namespace

void quantize_activations_fp8(float* x, int64_t rows, int64_t cols, int group, bool ue8m0) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += group) {
      float* values = x + r * cols + c0;
      const int64_t count = std::min<int64_t>(group, cols - c0);
      float amax = 0.0f;
      for (int64_t i = 0; i < count; ++i) amax = std::max(amax, std::fabs(values[i]));
      if (amax == 0.0f) continue;
      float scale = amax / kF8E4M3Max;
      if (ue8m0) scale = std::exp2(std::ceil(std::log2(scale)));
      for (int64_t i = 0; i < count; ++i) values[i] = round_to_f8e4m3(values[i] / scale) * scale;
    }
  }
}

void linear(ExecContext& ctx, const TensorView& x_in, const TensorView& weight, const TensorView& bias,
            const TensorView& out, const Fp8Scales* fp8) {
  const int64_t tokens = x_in.dim(0);
  const int64_t in_features = x_in.dim(1);
  const int64_t out_features = weight.dim(0);
  MS_CHECK(weight.dim(1) == in_features && out.dim(0) == tokens && out.dim(1) == out_features);
  MS_CHECK((weight.dtype == DType::kF8E4M3) == (fp8 != nullptr && fp8->scale != nullptr && fp8->block > 0));
  if (tokens == 0) return;
  TensorView x = x_in;
  std::vector<float> x_quantized;  // [tokens, in_features]: x after FP8 activation quantization
  if (fp8 != nullptr && fp8->quantize_activations) {
    x_quantized.assign(x_in.as<float>(), x_in.as<float>() + tokens * in_features);
    quantize_activations_fp8(x_quantized.data(), tokens, in_features, kFp8ActivationGroup, fp8->ue8m0);
    x.data = x_quantized.data();
  }
  const int64_t scale_cols = fp8 != nullptr ? (fp8->offset + in_features + fp8->block - 1) / fp8->block : 0;
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
      if (scale_cols > 0) {
        for (int64_t r = 0; r < rows; ++r) {
          const float* scales = fp8->scale + (row0 + r) * scale_cols;
          float* values = panel.data() + r * in_features;
          for (int64_t c = 0; c < in_features; ++c) values[c] *= scales[(c + fp8->offset) / fp8->block];
        }
      }
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
