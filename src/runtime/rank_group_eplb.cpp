// RankGroup's expert-parallel accounting and EPLB: per-step tokens per EP rank, the
// rearrangement trigger, and the weight moves (apply_expert_placement, runtime/expert_slots.h) —
// each rank sends the experts other ranks newly need (from its current slots) through one
// all-to-all per MoE layer, then swaps in the new map and slot experts at once. It runs between
// steps on every rank (its thread, or its worker process), so no forward ever sees a
// half-applied placement.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "runtime/rank_group.h"

namespace moeserve {

void RankGroup::after_step(const std::vector<ExpertLoad>& step_loads) {
  const int world = parallel_.world_size();
  const int per_rank = num_physical_ / world;
  const size_t logical_size = step_loads[0].counts.size();
  std::vector<int64_t> logical(logical_size, 0);
  std::vector<int64_t> rank_tokens(world, 0);
  for (const ExpertLoad& load : step_loads) {
    for (size_t i = 0; i < logical_size; ++i) logical[i] += load.counts[i];
    for (size_t i = 0; i < load.slot_counts.size(); ++i)
      rank_tokens[(i % num_physical_) / per_rank] += load.slot_counts[i];
  }
  ++steps_;
  int64_t step_tokens = 0;
  for (int64_t tokens : rank_tokens) step_tokens += tokens;
  double balancedness = 1.0;
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    for (int rank = 0; rank < world; ++rank) ep_stats_.rank_tokens_total[rank] += rank_tokens[rank];
    if (step_tokens > 0) {
      ep_stats_.balancedness = eplb::balancedness(std::vector<double>(rank_tokens.begin(), rank_tokens.end()));
    }
    balancedness = ep_stats_.balancedness;
  }
  if (!eplb_) return;
  const EplbConfig& config = eplb_->config();
  if (config.log_balancedness && steps_ % config.log_balancedness_interval == 0) {
    spdlog::info("EPLB step {}: balancedness {:.4f} (tokens per EP rank: {})", steps_, balancedness,
                 fmt::join(rank_tokens, ", "));
  }
  if (eplb_->record_step(logical)) rearrange_experts();
}

void RankGroup::rearrange_experts() {
  const int world = parallel_.world_size();
  std::vector<std::shared_ptr<const ExpertMap>> new_maps;
  std::vector<double> before(world, 0.0), after(world, 0.0);
  int moved = 0;
  EplbRearrangement record;
  record.step = steps_;
  for (size_t i = 0; i < moe_layers_.size(); ++i) {
    const int layer = moe_layers_[i];
    const ExpertMap& old = *maps_[i];
    const std::vector<double> load = eplb_->window_load(layer);
    auto map = std::make_shared<const ExpertMap>(
        ExpertMap::from_phys2log(eplb_->new_placement(layer), old.num_logical, world));
    const std::vector<double> old_ranks = expected_rank_load(load, old.phys2log, world);
    const std::vector<double> new_ranks = expected_rank_load(load, map->phys2log, world);
    for (int rank = 0; rank < world; ++rank) {
      before[rank] += old_ranks[rank];
      after[rank] += new_ranks[rank];
    }
    EplbLayerMove layer_move;
    layer_move.layer = layer;
    for (int slot = 0; slot < map->num_physical(); ++slot) {
      layer_move.slots_changed += map->phys2log[slot] != old.phys2log[slot];
    }
    // An arrival: an expert in a rank's new slots that none of its old slots held.
    const int per_rank = map->slots_per_rank();
    for (int rank = 0; rank < world; ++rank) {
      const auto old_begin = old.phys2log.begin() + rank * per_rank;
      for (int slot = rank * per_rank; slot < (rank + 1) * per_rank; ++slot) {
        const int expert = map->phys2log[slot];
        const bool held = std::find(old_begin, old_begin + per_rank, expert) != old_begin + per_rank;
        const bool listed = std::find_if(layer_move.arrivals.begin(), layer_move.arrivals.end(), [&](const auto& a) {
                              return a.expert == expert && a.rank == rank;
                            }) != layer_move.arrivals.end();
        if (!held && !listed) layer_move.arrivals.push_back({expert, rank});
      }
    }
    moved += layer_move.slots_changed;
    if (layer_move.slots_changed > 0) record.layers.push_back(std::move(layer_move));
    new_maps.push_back(std::move(map));
  }
  ranks_->apply_placement(moe_layers_, new_maps);
  maps_ = new_maps;
  record.balancedness_before = eplb::balancedness(before);
  record.balancedness_after = eplb::balancedness(after);
  int count = 0;
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    count = ++ep_stats_.rearrangements;
    record.index = count;
    std::vector<EplbRearrangement>& recent = ep_stats_.recent_rearrangements;
    recent.push_back(std::move(record));
    if (recent.size() > EpStats::kRecentRearrangements) recent.erase(recent.begin());
  }
  spdlog::info("EPLB rearrangement {} after step {} ({} policy): balancedness {:.4f} -> {:.4f} (mean/max tokens per "
               "EP rank over the last {} steps' loads), {} slots changed; now {}",
               count, steps_, eplb::uses_hierarchical(eplb_->params()) ? "hierarchical" : "global",
               eplb::balancedness(before), eplb::balancedness(after), eplb_->config().window_size, moved,
               describe_layout());
}

}  // namespace moeserve
