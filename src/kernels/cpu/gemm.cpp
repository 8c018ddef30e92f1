// CPU reference: the step GEMM (dense or grouped per expert, optionally SwiGLU, optionally reading
// its rows through x_rows), composed of the tensor ops: gather_rows, then linear per group with
// the group's weight matrix (bf16, float32, fp8 with its block scales, or MXFP4 dequantized) and
// bias, then silu_mul (the GluParams' activation) of the gate and up halves.
#include <vector>

#include "kernels/cpu/step_views.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void gemm(ExecContext& ctx, const GemmArgs& args) {
  const int groups = args.offsets != nullptr ? args.groups : 1;
  const int64_t k = args.k;
  const int64_t n = args.n;
  const int64_t n_weight = args.swiglu ? 2 * n : n;  // W_g rows
  for (int g = 0; g < groups; ++g) {
    const int64_t first = args.offsets != nullptr ? args.offsets[g] : 0;
    const int64_t rows = args.offsets != nullptr ? args.offsets[g + 1] - first : args.rows;
    if (rows == 0) continue;
    std::vector<float> x(static_cast<size_t>(rows) * k);  // the group's input rows [rows, K]
    if (args.x_rows != nullptr) {
      gather_rows(ctx, args.x, static_cast<int>(k), args.x_rows + first, static_cast<int>(rows), x.data(), nullptr);
    } else {
      std::copy(args.x + first * k, args.x + (first + rows) * k, x.begin());
    }
    const bool fp8 = args.weight_fp8 != nullptr;
    std::vector<uint16_t> dequantized;  // [n_weight, k]: an MXFP4 group's weights as bf16 (exact)
    if (args.weight_mxfp4 != nullptr) {
      dequantized.resize(static_cast<size_t>(n_weight * k));
      dequantize_mxfp4(args.weight_mxfp4 + g * args.group_stride / 2, args.mx_scale + g * args.group_stride / 32,
                       n_weight, k, dequantized.data());
    }
    const TensorView weight = !dequantized.empty() ? bf16_matrix(dequantized.data(), n_weight, k)
                              : fp8 ? fp8_matrix(args.weight_fp8 + g * args.group_stride, n_weight, k)
                              : args.weight_f32 != nullptr
                                  ? f32_matrix(args.weight_f32 + g * args.group_stride, n_weight, k)
                                  : bf16_matrix(args.weight + g * args.group_stride, n_weight, k);
    Fp8Scales scales = args.fp8;  // group g's
    if (fp8) scales.scale += g * args.scale_group_stride;
    const Fp8Scales* weight_scales = fp8 ? &scales : nullptr;
    const int64_t bias_at = g * args.bias_group_stride;
    const TensorView bias = weight_vector(args.bias != nullptr ? args.bias + bias_at : nullptr,
                                          args.bias_f32 != nullptr ? args.bias_f32 + bias_at : nullptr, n_weight);
    float* out = args.out + first * n;
    if (!args.swiglu) {
      linear(ctx, f32_matrix(x.data(), rows, k), weight, bias, f32_matrix(out, rows, n), weight_scales);
      continue;
    }
    std::vector<float> gate_up(static_cast<size_t>(rows) * n_weight);  // [rows, gate N | up N]
    linear(ctx, f32_matrix(x.data(), rows, k), weight, bias, f32_matrix(gate_up.data(), rows, n_weight),
           weight_scales);
    silu_mul(ctx, gate_up.data(), static_cast<int>(rows), static_cast<int>(n), out, nullptr, args.glu);
  }
}

}  // namespace moeserve::ops
