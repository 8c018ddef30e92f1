// CPU reference: the MoE combine, composed of the tensor ops — the experts' split-K slices
// summed, scatter_add_rows of every (token, k) entry with its weight, the shared expert added
// (gated by sigmoid of its logit when given), and optionally the residual add + RMSNorm after.
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

void moe_combine(ExecContext& ctx, const MoeCombineArgs& args) {
  const int64_t tokens = args.tokens;
  const int64_t hidden = args.hidden;
  const int64_t entries = tokens * args.top_k;
  std::vector<float> expert_out(static_cast<size_t>(entries) * hidden, 0.0f);  // [T × top_k, hidden], permuted
  for (int s = 0; s < args.expert_splits; ++s) {
    const float* slice = args.expert_out + s * args.expert_split_stride;
    for (size_t i = 0; i < expert_out.size(); ++i) expert_out[i] += slice[i];
  }
  // Entry (t, k) is permuted row positions[t, k]: bring the rows back to entry order, then add
  // each entry into its token's row.
  std::vector<float> by_entry(expert_out.size());
  gather_rows(ctx, TensorView{expert_out.data(), DType::kF32, Shape{entries, hidden}},
              std::span<const int32_t>(args.positions, entries),
              TensorView{by_entry.data(), DType::kF32, Shape{entries, hidden}});
  std::vector<float> combined(static_cast<size_t>(tokens) * hidden, 0.0f);
  const TensorView combined_view{combined.data(), DType::kF32, Shape{tokens, hidden}};
  for (int k = 0; k < args.top_k; ++k) {  // rows may not repeat within one scatter: one k at a time
    std::vector<float> rows(static_cast<size_t>(tokens) * hidden), weights(tokens);
    std::vector<int32_t> targets(tokens);
    for (int64_t t = 0; t < tokens; ++t) {
      const float* src = &by_entry[(t * args.top_k + k) * hidden];
      weights[t] = args.weights[t * args.top_k + k];
      if (weights[t] == 0.0f) continue;  // adds nothing, whatever its row holds (rows stays 0)
      std::copy(src, src + hidden, &rows[t * hidden]);
      targets[t] = static_cast<int32_t>(t);
    }
    scatter_add_rows(ctx, TensorView{rows.data(), DType::kF32, Shape{tokens, hidden}}, targets, weights,
                     combined_view);
  }
  if (args.shared_out != nullptr) {
    std::vector<float> gates(tokens, 1.0f);
    if (args.shared_gate_logit != nullptr) {
      for (int64_t t = 0; t < tokens; ++t) gates[t] = 1.0f / (1.0f + std::exp(-args.shared_gate_logit[t]));
    }
    std::vector<int32_t> targets(tokens);
    for (int64_t t = 0; t < tokens; ++t) targets[t] = static_cast<int32_t>(t);
    scatter_add_rows(ctx, TensorView{const_cast<float*>(args.shared_out), DType::kF32, Shape{tokens, hidden}}, targets,
                     gates, combined_view);
  }
  if (args.residual == nullptr) {
    std::copy(combined.begin(), combined.end(), args.out);
    return;
  }
  rms_norm(ctx, RmsNormArgs{.x = args.residual,
                            .add = combined.data(),
                            .rows = args.tokens,
                            .dim = args.hidden,
                            .weight = args.norm_weight,
                            .weight_f32 = args.norm_weight_f32,
                            .eps = args.eps,
                            .out_f32 = args.normed_f32,
                            .out_bf16 = args.normed_bf16});
}

}  // namespace moeserve::ops
