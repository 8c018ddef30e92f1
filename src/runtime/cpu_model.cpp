#include "runtime/cpu_model.h"

#include <algorithm>
#include <cstring>

#include "model/sharded_weights.h"
#include "model/weight_plan.h"

namespace moeserve {

Result<std::unique_ptr<CpuModel>> CpuModel::load(const ModelConfig& config, const WeightSource& weights,
                                                 const ModelOptions& options) {
  if (config.fp8_block_size) return fp8_unsupported_error("CPU");
  MS_RETURN_IF_ERROR(validate_shard_spec(config, options.shard));
  std::unique_ptr<CpuModel> model(new CpuModel());
  model->config_ = config;
  model->options_ = options;
  const WeightPlan plan = WeightPlan::build(model->config_);
  std::vector<Tensor> copies;  // column blocks copied out of the checkpoint, until packed
  MS_ASSIGN_OR_RETURN(model->weights_, load_model_weights(model->config_, ShardedWeights(weights, plan, copies),
                                                          options.shard, model->memory_));
  model->loop_ = std::make_unique<DecoderLoop>(model->config_, model->weights_, options.shard, options.mla_mode);
  return model;
}

int CpuModel::kv_entry_size() const { return moeserve::kv_entry_size(config_, options_.shard.tp); }

void CpuModel::forward(ExecContext& exec, const ForwardBatch& batch, const KvMemory& kv, const TensorView& logits,
                       const ParallelComm& comm) const {
  const int tokens = static_cast<int>(batch.token_ids.size());
  if (backend_ == nullptr || backend_exec_ != &exec || backend_tokens_ < std::max(tokens, 1)) {
    backend_tokens_ = std::max({tokens, backend_tokens_, 1});
    backend_ = std::make_unique<CpuStepBackend>(exec, loop_->workspace_bytes(backend_tokens_, 0));
    backend_exec_ = &exec;
  }
  // The step's words (step_packing.h's layout): ids | positions | table_offsets | slots |
  // logit rows | query tiles (one per sequence: the CPU takes none) | block tables.
  const int logit_rows = static_cast<int>(batch.logit_rows.size());
  const int tiles = static_cast<int>(batch.sequences.size());
  std::vector<int32_t> tables;
  std::vector<StepPiece> pieces;
  for (const SequenceView& seq : batch.sequences) {
    pieces.push_back(StepPiece{.first_row = seq.query_begin,
                               .count = seq.num_query,
                               .begin = seq.context_len - seq.num_query,
                               .table_offset = static_cast<int>(tables.size())});
    tables.insert(tables.end(), seq.block_table.begin(), seq.block_table.end());
  }
  std::vector<int32_t> words(size_t(4) * tokens + logit_rows + 2 * size_t(tiles) + tables.size());
  int32_t* ids = words.data();
  int32_t* positions = ids + tokens;
  int32_t* table_offsets = positions + tokens;
  int32_t* slots = table_offsets + tokens;
  int32_t* logit_ids = slots + tokens;
  int32_t* query_tiles = logit_ids + logit_rows;
  std::copy(batch.token_ids.begin(), batch.token_ids.end(), ids);
  std::copy(batch.positions.begin(), batch.positions.end(), positions);
  std::copy(batch.logit_rows.begin(), batch.logit_rows.end(), logit_ids);
  const int bs = kv.shape().block_size;
  for (size_t s = 0; s < pieces.size(); ++s) {
    const StepPiece& piece = pieces[s];
    query_tiles[2 * s] = piece.first_row;
    query_tiles[2 * s + 1] = piece.count;
    for (int i = 0; i < piece.count; ++i) {
      const int row = piece.first_row + i;
      const int position = piece.begin + i;
      table_offsets[row] = piece.table_offset;
      const int32_t block = batch.sequences[s].block_table[position / bs];
      MS_CHECK(block >= 0 && block < kv.shape().num_blocks);
      slots[row] = block * bs + position % bs;
    }
  }
  std::copy(tables.begin(), tables.end(), query_tiles + 2 * tiles);
  const StepInputs inputs{.tokens = tokens,
                          .token_ids = ids,
                          .positions = positions,
                          .table_offsets = table_offsets,
                          .block_tables = query_tiles + 2 * tiles,
                          .slots = slots,
                          .logit_rows = logit_rows,
                          .logit_row_ids = logit_ids,
                          .num_query_tiles = tiles,
                          .query_tile_rows = tokens,
                          .query_tiles = query_tiles,
                          .pieces = pieces};
  KvLayers layers{.block_size = bs, .entry_size = kv.shape().entry_size};
  for (int l = 0; l < kv.shape().num_layers; ++l) layers.layers.push_back(kv.layer(l).data);
  ExpertLoad* load = batch.expert_load;
  const LoadCounters counters{
      .experts = load != nullptr && !load->counts.empty() ? load->counts.data() : nullptr,
      .slots = load != nullptr && !load->slot_counts.empty() ? load->slot_counts.data() : nullptr};
  loop_->forward(*backend_, inputs, layers, logits.as<float>(), counters, comm);
}

size_t CpuModel::expert_bytes(int layer) const {
  const MoeWeights& w = weights_.layers[layer].moe;
  return size_t(3) * w.intermediate * config_.hidden_size * sizeof(uint16_t);
}

void CpuModel::copy_slot(int layer, int slot, std::byte* dst) const {
  const MoeWeights& w = weights_.layers[layer].moe;
  const size_t gate_up = size_t(2) * w.intermediate * config_.hidden_size;
  const size_t down = size_t(w.intermediate) * config_.hidden_size;
  std::memcpy(dst, w.experts_gate_up + slot * gate_up, gate_up * sizeof(uint16_t));
  std::memcpy(dst + gate_up * sizeof(uint16_t), w.experts_down + slot * down, down * sizeof(uint16_t));
}

void CpuModel::set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                             std::span<const std::byte* const> slots) {
  MoeWeights& w = weights_.layers[layer].moe;
  MS_CHECK(static_cast<int>(slots.size()) == w.num_slots && map->slots_per_rank() == w.num_slots);
  const size_t gate_up = size_t(2) * w.intermediate * config_.hidden_size;
  const size_t down = size_t(w.intermediate) * config_.hidden_size;
  // Staged whole first: a slot's new expert may be another slot's old one.
  std::vector<uint16_t> new_gate_up(gate_up * w.num_slots), new_down(down * w.num_slots);
  for (int j = 0; j < w.num_slots; ++j) {
    std::memcpy(&new_gate_up[j * gate_up], slots[j], gate_up * sizeof(uint16_t));
    std::memcpy(&new_down[j * down], slots[j] + gate_up * sizeof(uint16_t), down * sizeof(uint16_t));
  }
  memory_.write(const_cast<uint16_t*>(w.experts_gate_up), new_gate_up.data(), new_gate_up.size() * sizeof(uint16_t));
  memory_.write(const_cast<uint16_t*>(w.experts_down), new_down.data(), new_down.size() * sizeof(uint16_t));
  w.map = std::move(map);
}

}  // namespace moeserve
