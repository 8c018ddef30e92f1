// SwiGLU MLP: down(silu(gate(x)) * up(x)). Used for dense layers, every routed expert and the
// shared experts. Tensor parallel (`part` of the intermediate dim): gate/up are row blocks
// (views), down the matching column block (a copy); forward then yields this rank's partial
// sum, which the caller all-reduces (once per block, not per MLP).
#pragma once

#include "model/sharded_weights.h"
#include "model/layers/layer_context.h"

namespace moeserve {

class SwigluMlp {
 public:
  // Loads the three projections of `roles` in `layer` (routed experts: expert `expert`);
  // gate/up [I, hidden], down [hidden, I] (this rank holds I / part.size of the intermediate dim).
  static Result<SwigluMlp> load(const ShardedWeights& weights, const SwigluRoles& roles, int layer,
                                const Partition& part = {}, int expert = 0);
  // From weights already in memory (expert-parallel placement and EPLB moves).
  static SwigluMlp from_views(TensorView gate, TensorView up, TensorView down) {
    SwigluMlp mlp;
    mlp.gate_ = gate;
    mlp.up_ = up;
    mlp.down_ = down;
    return mlp;
  }
  const TensorView& gate() const { return gate_; }
  const TensorView& up() const { return up_; }
  const TensorView& down() const { return down_; }

  // x [T, hidden] → out [T, hidden].
  void forward(ExecContext& exec, const TensorView& x, const TensorView& out) const;

 private:
  TensorView gate_, up_, down_;
};

}  // namespace moeserve
