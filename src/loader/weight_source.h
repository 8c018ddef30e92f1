// WeightSource: where a model's layers get their weight tensors by name and expected shape —
// a real checkpoint (Checkpoint) or random weights of the right shapes (DummyWeights, for
// `--load-format dummy`). Views stay valid while the source lives.
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "tensor/tensor.h"

namespace moeserve {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // A tensor the architecture needs: present, float dtype, exactly `expected` shape. An F8_E4M3
  // tensor comes without its block scales: the weight loader (model/model_weights.cpp) pairs it
  // with `<name>_scale_inv`.
  virtual Result<TensorView> require(const std::string& name, const Shape& expected) const = 0;
  // Like require, but an absent tensor gives a null view (data == nullptr).
  virtual Result<TensorView> optional(const std::string& name, const Shape& expected) const = 0;
  // A tensor of packed bytes (U8: MXFP4 blocks and e8m0 scales) of exactly `expected` shape, or a
  // null view when absent (random weights have none: they come as the float tensor itself).
  virtual Result<TensorView> optional_bytes(const std::string& /*name*/, const Shape& /*expected*/) const {
    return TensorView{};
  }
  // A float scalar (shape [] or [1]: a KV cache scale) as float32, or nullopt when absent (random
  // weights carry none).
  virtual Result<std::optional<float>> optional_scalar(const std::string& /*name*/) const {
    return std::optional<float>();
  }
};

}  // namespace moeserve
