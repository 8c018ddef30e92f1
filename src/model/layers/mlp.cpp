#include "model/layers/mlp.h"

namespace moeserve {

Result<SwigluMlp> SwigluMlp::load(const ShardedWeights& weights, const SwigluRoles& roles, int layer,
                                  const Partition& part, int expert) {
  SwigluMlp mlp;
  MS_ASSIGN_OR_RETURN(mlp.gate_, weights.shard(roles.gate, layer, part, expert));
  MS_ASSIGN_OR_RETURN(mlp.up_, weights.shard(roles.up, layer, part, expert));
  MS_ASSIGN_OR_RETURN(mlp.down_, weights.shard(roles.down, layer, part, expert));
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
