#include "loader/dummy_weights.h"

#include <functional>
#include <random>

namespace moeserve {

static bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<TensorView> DummyWeights::require(const std::string& name, const Shape& expected) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    Tensor tensor(DType::kBF16, expected);
    auto* bits = tensor.view().as<uint16_t>();
    const bool is_norm = ends_with(name, "norm.weight");
    std::mt19937_64 rng(seed_ ^ std::hash<std::string>{}(name));
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (int64_t i = 0; i < expected.numel(); ++i) bits[i] = f32_to_bf16(is_norm ? 1.0f : normal(rng));
    it = tensors_.emplace(name, std::move(tensor)).first;
  }
  return it->second.view();
}

Result<TensorView> DummyWeights::optional(const std::string& name, const Shape& expected) const {
  return require(name, expected);
}

}  // namespace moeserve
