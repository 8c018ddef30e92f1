#include "model/backend_support.h"

#include <algorithm>

#include "kernels/ops.h"

namespace moeserve {

std::vector<std::string> cuda_missing_features(const ModelConfig& config) {
  std::vector<std::string> missing;
  if (config.attention_sinks) missing.emplace_back("attention sinks");
  if (!config.layer_windows.empty()) missing.emplace_back("per-layer sliding windows (layer_types)");
  const auto any = [](const std::vector<bool>& v) { return std::find(v.begin(), v.end(), true) != v.end(); };
  if (any(config.layer_chunked)) missing.emplace_back("chunked local attention");
  if (any(config.layer_nope)) missing.emplace_back("NoPE layers with attention-temperature tuning");
  if (config.qk_l2_norm) missing.emplace_back("the L2 QK-norm");
  if (config.mla && config.mla->indexer && config.mla->indexer->topk > cuda::kMaxIndexTopk) {
    missing.emplace_back("an index_topk above 2048");
  }
  if (config.moe) {
    if (config.moe->clamped_swiglu) missing.emplace_back("the clamped SwiGLU");
    if (config.moe->expert_bias) missing.emplace_back("expert biases");
    if (config.moe->router_bias) missing.emplace_back("the router's bias");
    if (config.moe->scoring == RouterScoring::kTopKSoftmax) missing.emplace_back("softmax over the top-k logits");
    if (config.moe->scale_expert_input) missing.emplace_back("input-scaled experts");
  }
  return missing;
}

}  // namespace moeserve
