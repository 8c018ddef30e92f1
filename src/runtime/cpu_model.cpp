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

void CpuModel::forward(ExecContext& exec, std::span<const RunnerSeq> seqs, const KvMemory& kv,
                       const TensorView& logits, ExpertLoad* load, const ParallelComm& comm) const {
  std::vector<StepPieceSource> pieces;
  for (const RunnerSeq& seq : seqs) pieces.push_back(piece_of(seq));
  // One query tile per row: the CPU's attention takes none.
  const PackedStep step = pack_step(pieces, kv.shape().block_size, /*tile_rows=*/1, config_.vocab_size,
                                    kv.shape().num_blocks);
  if (backend_ == nullptr || backend_exec_ != &exec || backend_tokens_ < std::max(step.tokens, 1)) {
    backend_tokens_ = std::max({step.tokens, backend_tokens_, 1});
    backend_ = std::make_unique<CpuStepBackend>(exec, loop_->workspace_bytes(backend_tokens_, 0),
                                                CpuNumerics{.fp8_activations = options_.fp8_activations,
                                                            .ue8m0 = config_.fp8_scale_ue8m0,
                                                            .kv_fp8 = options_.kv_cache_fp8});
    backend_exec_ = &exec;
  }
  MS_CHECK(logits.numel() == int64_t(step.logit_rows) * config_.vocab_size);
  KvLayers layers{.block_size = kv.shape().block_size, .entry_size = kv.shape().entry_size};
  for (int l = 0; l < kv.shape().num_layers; ++l) layers.layers.push_back(kv.layer(l).data);
  const LoadCounters counters{
      .experts = load != nullptr && !load->counts.empty() ? load->counts.data() : nullptr,
      .slots = load != nullptr && !load->slot_counts.empty() ? load->slot_counts.data() : nullptr};
  loop_->forward(*backend_, step.inputs_at(step.words.data()), layers, logits.as<float>(), counters, comm);
}

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
