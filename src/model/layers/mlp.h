// SwiGLU MLP: down(silu(gate(x)) * up(x)). Used for dense layers, every routed expert and the
// shared experts.
#pragma once

#include <string>

#include "loader/weight_source.h"
#include "model/layers/layer_context.h"

namespace moeserve {

class SwigluMlp {
 public:
  // Loads prefix + {gate,up,down} names + ".weight"; gate/up [I, hidden], down [hidden, I].
  static Result<SwigluMlp> load(const WeightSource& weights, const std::string& prefix, int64_t hidden,
                                int64_t intermediate, const std::string& gate_name = "gate_proj",
                                const std::string& up_name = "up_proj", const std::string& down_name = "down_proj");

  // x [T, hidden] → out [T, hidden].
  void forward(ExecContext& exec, const TensorView& x, const TensorView& out) const;

 private:
  TensorView gate_, up_, down_;
};

}  // namespace moeserve
