#include "plan/weights.h"

namespace moeserve::plan {

ParamCounts count_params(const ModelConfig& config, const WeightPlan& weights) {
  ParamCounts counts;
  for (const WeightEntry& group : weights.entries()) {
    if (group.mtp) {
      counts.mtp += group.elements();
      continue;
    }
    counts.total += group.elements();
    counts.by_component[static_cast<int>(group.component)] += group.elements();
    if (group.component == Component::kRoutedExperts) {
      counts.active += group.shape.numel() * config.moe->top_k;
    } else {
      counts.active += group.elements();
    }
    if (group.component == Component::kEmbedding) counts.embedding += group.elements();
  }
  return counts;
}

}  // namespace moeserve::plan
