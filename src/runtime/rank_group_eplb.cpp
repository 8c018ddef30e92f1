// RankGroup's expert-parallel accounting and EPLB: per-step tokens per EP rank, the
// rearrangement trigger, and the weight moves (RankShard::apply_placement) — each rank sends the
// experts other ranks newly need (from its current slots) through one all-to-all per MoE layer,
// then swaps in the new map and slot experts at once. It runs between steps on every rank (its
// thread, or its worker process), so no forward ever sees a half-applied placement.
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

void RankShard::apply_placement(std::span<const int> moe_layers,
                                const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) {
  const int world = world_;
  const int rank = rank_;
  Communicator& ep = *ep_;
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    CpuModel& model = *model_;
    const int layer = moe_layers[i];
    const ExpertMap& old = model.expert_map(layer);
    const ExpertMap& next = *new_maps[i];
    const int per_rank = old.slots_per_rank();
    auto local_index = [&](int owner, int expert) {  // the old local slot of `expert` on `owner`, or -1
      for (int j = 0; j < per_rank; ++j) {
        if (old.phys2log[owner * per_rank + j] == expert) return j;
      }
      return -1;
    };
    // Every rank derives the same transfer list: (dst ascending, new slot ascending), one per
    // expert a rank newly needs, sent by the owner of the expert's first old slot.
    struct Transfer {
      int src, dst, expert;
    };
    std::vector<Transfer> transfers;
    for (int dst = 0; dst < world; ++dst) {
      std::vector<int> fetched;
      for (int j = 0; j < per_rank; ++j) {
        const int expert = next.phys2log[dst * per_rank + j];
        if (local_index(dst, expert) >= 0 || std::find(fetched.begin(), fetched.end(), expert) != fetched.end()) {
          continue;
        }
        fetched.push_back(expert);
        transfers.push_back({old.owner(old.log2phys[expert][0]), dst, expert});
      }
    }
    const size_t row_bytes = model.expert_bytes(layer);  // one expert: gate/up | down, bf16
    std::vector<int64_t> send_rows(world, 0), recv_rows(world, 0);
    std::vector<int> sent;
    for (const Transfer& t : transfers) {
      if (t.src == rank) ++send_rows[t.dst], sent.push_back(t.expert);
      if (t.dst == rank) ++recv_rows[t.src];
    }
    Tensor send(DType::kU8, Shape{static_cast<int64_t>(sent.size()), static_cast<int64_t>(row_bytes)});
    for (size_t row = 0; row < sent.size(); ++row) {
      model.copy_slot(layer, local_index(rank, sent[row]), send.view().as<std::byte>() + row * row_bytes);
    }
    int64_t received_count = 0;
    for (int64_t rows : recv_rows) received_count += rows;
    Tensor recv(DType::kU8, Shape{received_count, static_cast<int64_t>(row_bytes)});
    ep.all_to_all_rows(send.view(), send_rows, recv.view(), recv_rows);
    // Received rows are grouped by source rank, each group in transfer order.
    std::unordered_map<int, const std::byte*> arrived;
    int64_t row = 0;
    for (int src = 0; src < world; ++src) {
      for (const Transfer& t : transfers) {
        if (t.dst == rank && t.src == src) arrived[t.expert] = recv.view().as<std::byte>() + row++ * row_bytes;
      }
    }
    // The new slots: kept experts from the current slots, the others as they arrived.
    std::vector<std::byte> kept_bytes(per_rank * row_bytes);
    std::vector<const std::byte*> slots(per_rank);
    for (int j = 0; j < per_rank; ++j) {
      const int expert = next.phys2log[rank * per_rank + j];
      const int kept = local_index(rank, expert);
      if (kept >= 0) {
        model.copy_slot(layer, kept, kept_bytes.data() + j * row_bytes);
        slots[j] = kept_bytes.data() + j * row_bytes;
      } else {
        slots[j] = arrived.at(expert);
      }
    }
    model.set_placement(layer, new_maps[i], slots);
  }
}

}  // namespace moeserve
