// DummyWeights: `--load-format dummy`. Hands out deterministic random bf16 tensors of whatever
// shape the architecture asks for (norm weights are 1), so a benchmark can run a real model's
// shape without its checkpoint. Memory is allocated per tensor on first request.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "loader/weight_source.h"

namespace moeserve {

class DummyWeights : public WeightSource {
 public:
  explicit DummyWeights(uint64_t seed) : seed_(seed) {}
  Result<TensorView> require(const std::string& name, const Shape& expected) const override;
  Result<TensorView> optional(const std::string& name, const Shape& expected) const override;

 private:
  uint64_t seed_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Tensor> tensors_;
};

}  // namespace moeserve
