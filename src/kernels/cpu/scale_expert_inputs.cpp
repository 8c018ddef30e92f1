// CPU reference: Llama 4's input-scaled experts (ops::scale_expert_inputs) — each entry's token
// row times its routing weight, the permuted rows pointed at them, the weights made 1.
#include "kernels/ops.h"

namespace moeserve::ops {

void scale_expert_inputs(ExecContext&, const ScaleExpertInputsArgs& args) {
  for (int e = 0; e < args.entries; ++e) {
    const float* row = args.x + static_cast<int64_t>(e / args.top_k) * args.hidden;  // [hidden]
    float* dst = args.x_scaled + static_cast<int64_t>(e) * args.hidden;            // [hidden]
    for (int i = 0; i < args.hidden; ++i) dst[i] = row[i] * args.weights[e];
    args.entry_rows[args.positions[e]] = e;
    args.weights[e] = args.weights[e] != 0.0f ? 1.0f : 0.0f;
  }
}

}  // namespace moeserve::ops
