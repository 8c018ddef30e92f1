// Parameter counts of a model, derived from its weight plan (model/weight_plan.h): the one list
// of every tensor a checkpoint of the config holds. Weight bytes per dtype and per-GPU shards
// (memory_model.cpp) read the same plan.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weight_plan.h"

namespace moeserve::plan {

// Parameter counts. total/active exclude MTP layers (as every published total does); `mtp` is
// the MTP layers' unique parameters (their embedding and output head are shared with the main
// model and not counted again). Active = everything a token passes through: all non-expert
// weights plus top_k of the routed experts in each MoE layer.
struct ParamCounts {
  int64_t total = 0;
  int64_t active = 0;
  int64_t embedding = 0;  // input embedding (a lookup; DeepSeek's "activated" figures leave it out)
  int64_t mtp = 0;
  int64_t by_component[kNumComponents] = {};

  int64_t active_without_embedding() const { return active - embedding; }
};

ParamCounts count_params(const ModelConfig& config, const WeightPlan& weights);

}  // namespace moeserve::plan
