#include "runtime/cpu_model.h"

#include <algorithm>
#include <array>
#include <span>
#include <cstring>

#include "model/sharded_weights.h"
#include "model/weight_plan.h"

namespace moeserve {

Result<std::unique_ptr<CpuModel>> CpuModel::load(const ModelConfig& config, const WeightSource& weights,
                                                 const ModelOptions& options) {
  MS_RETURN_IF_ERROR(validate_shard_spec(config, options.shard));
  std::unique_ptr<CpuModel> model(new CpuModel());
  model->config_ = config;
  model->options_ = options;
  const WeightPlan plan = WeightPlan::build(model->config_);
  std::vector<Tensor> copies;  // column blocks copied out of the checkpoint, until packed
  MS_ASSIGN_OR_RETURN(model->weights_, load_model_weights(model->config_, ShardedWeights(weights, plan, copies),
                                                          options.shard, model->memory_, options.precision));
  model->loop_ = std::make_unique<DecoderLoop>(model->config_, model->weights_, options.shard, options.mla_mode);
  return model;
}

int CpuModel::kv_entry_size() const { return moeserve::kv_entry_size(config_, options_.shard.tp); }

size_t CpuModel::expert_bytes(int layer) const { return expert_slot_bytes(weights_.layers[layer].moe); }

void CpuModel::copy_slot(int layer, int slot, std::byte* dst) const {
  for (const auto& segment : expert_slot_segments(weights_.layers[layer].moe, slot)) {
    std::memcpy(dst, segment.data(), segment.size());
    dst += segment.size();
  }
}

void CpuModel::set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                             std::span<const std::byte* const> slots) {
  MoeWeights& w = weights_.layers[layer].moe;
  MS_CHECK(static_cast<int>(slots.size()) == w.num_slots && map->slots_per_rank() == w.num_slots);
  // Staged whole first: a slot's new expert may be another slot's old one.
  const size_t slot_bytes = expert_bytes(layer);
  std::vector<std::byte> staged(slot_bytes * w.num_slots);
  for (int j = 0; j < w.num_slots; ++j) std::memcpy(&staged[j * slot_bytes], slots[j], slot_bytes);
  for (int j = 0; j < w.num_slots; ++j) {
    const std::byte* src = &staged[j * slot_bytes];
    for (const auto& segment : expert_slot_segments(w, j)) {
      memory_.write(segment.data(), src, segment.size());
      src += segment.size();
    }
  }
  w.map = std::move(map);
}

}  // namespace moeserve
