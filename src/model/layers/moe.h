// The MoE block, split as router → dispatch → experts → combine (so any all-to-all backend can
// later sit between dispatch and combine): route every token to top_k experts, run each expert
// that received tokens on exactly those rows, add the weighted outputs back, plus the shared
// experts (Qwen2-MoE: scaled by sigmoid(x · shared_expert_gate)).
#pragma once

#include <string>
#include <vector>

#include "loader/weight_source.h"
#include "model/config.h"
#include "model/layers/mlp.h"
#include "model/registry.h"

namespace moeserve {

class MoeBlock {
 public:
  static Result<MoeBlock> load(const ModelConfig& config, const WeightNames& names, const WeightSource& weights,
                               const std::string& prefix);

  // x [T, hidden] → out [T, hidden].
  void forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const;

 private:
  ops::RouterParams router_params_;
  TensorView router_;          // [E, hidden]
  TensorView selection_bias_;  // [E] e_score_correction_bias, or null
  std::vector<SwigluMlp> experts_;
  bool has_shared_ = false;
  SwigluMlp shared_;
  TensorView shared_gate_;  // [1, hidden] or null
};

}  // namespace moeserve
