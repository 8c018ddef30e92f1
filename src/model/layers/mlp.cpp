#include "model/layers/mlp.h"

namespace moeserve {

Result<SwigluMlp> SwigluMlp::load(const WeightSource& weights, const std::string& prefix, int64_t hidden,
                                  int64_t intermediate, const std::string& gate_name, const std::string& up_name,
                                  const std::string& down_name) {
  SwigluMlp mlp;
  MS_ASSIGN_OR_RETURN(mlp.gate_, weights.require(prefix + gate_name + ".weight", Shape{intermediate, hidden}));
  MS_ASSIGN_OR_RETURN(mlp.up_, weights.require(prefix + up_name + ".weight", Shape{intermediate, hidden}));
  MS_ASSIGN_OR_RETURN(mlp.down_, weights.require(prefix + down_name + ".weight", Shape{hidden, intermediate}));
  return mlp;
}

void SwigluMlp::forward(ExecContext& exec, const TensorView& x, const TensorView& out) const {
  const int64_t tokens = x.dim(0);
  const int64_t intermediate = gate_.dim(0);
  Tensor gate(DType::kF32, Shape{tokens, intermediate});
  Tensor up(DType::kF32, Shape{tokens, intermediate});
  ops::linear(exec, x, gate_, TensorView{}, gate.view());
  ops::linear(exec, x, up_, TensorView{}, up.view());
  ops::silu_mul(exec, gate.view(), up.view(), gate.view());
  ops::linear(exec, gate.view(), down_, TensorView{}, out);
}

}  // namespace moeserve
