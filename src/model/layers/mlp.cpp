#include "model/layers/mlp.h"

namespace moeserve {

Result<SwigluMlp> SwigluMlp::load(const ShardedWeights& weights, const std::string& prefix, int64_t hidden,
                                  int64_t intermediate, const Partition& part, const MlpNames& names) {
  SwigluMlp mlp;
  MS_ASSIGN_OR_RETURN(mlp.gate_, weights.row_block(prefix + names.gate + ".weight", Shape{intermediate, hidden}, part));
  MS_ASSIGN_OR_RETURN(mlp.up_, weights.row_block(prefix + names.up + ".weight", Shape{intermediate, hidden}, part));
  MS_ASSIGN_OR_RETURN(mlp.down_,
                      weights.col_block(prefix + names.down + ".weight", Shape{hidden, intermediate}, part));
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
