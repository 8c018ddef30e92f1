#include "model/layers/moe.h"

#include <cmath>

#include "model/layers/moe_dispatch.h"

namespace moeserve {

ops::RouterParams router_params(const MoeConfig& moe) {
  return ops::RouterParams{.top_k = moe.top_k,
                           .sigmoid = moe.scoring == RouterScoring::kSigmoid,
                           .num_groups = moe.selection == RouterSelection::kTopK ? 1 : moe.num_groups,
                           .topk_groups = moe.topk_groups,
                           .group_score_top2_sum = moe.selection == RouterSelection::kGroupLimitedTop2Sum,
                           .renormalize = moe.norm_topk_prob,
                           .scaling_factor = moe.routed_scaling_factor};
}

Result<MoeBlock> MoeBlock::load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                                const ShardSpec& shard) {
  const MoeConfig& moe = *config.moe;
  MoeBlock block;
  block.router_params_ = router_params(moe);
  block.num_experts_ = moe.num_experts;
  block.expert_parallel_ = shard.expert_parallel;
  block.tp_ = shard.tp;
  block.ep_ = shard.ep;
  block.all2all_ = shard.all2all;
  MS_ASSIGN_OR_RETURN(block.router_, weights.whole(WeightRole::kRouter, layer_idx));
  MS_ASSIGN_OR_RETURN(block.selection_bias_, weights.whole_if_present(WeightRole::kRouterBias, layer_idx));
  // Expert parallel: whole experts for this rank's slots; else every expert's TP slice.
  const Partition expert_part = shard.expert_parallel ? Partition{} : shard.tp;
  std::vector<int> to_load;
  if (shard.expert_parallel) {
    block.map_ = std::make_shared<const ExpertMap>(
        ExpertMap::initial(moe.num_experts, shard.num_redundant_experts, shard.ep.size, shard.placement));
    const int per_rank = block.map_->slots_per_rank();
    for (int slot = shard.ep.rank * per_rank; slot < (shard.ep.rank + 1) * per_rank; ++slot) {
      to_load.push_back(block.map_->phys2log[slot]);
    }
  } else {
    for (int expert = 0; expert < moe.num_experts; ++expert) to_load.push_back(expert);
  }
  block.experts_.reserve(to_load.size());
  for (int expert : to_load) {
    MS_ASSIGN_OR_RETURN(SwigluMlp mlp, SwigluMlp::load(weights, kRoutedExpertRoles, layer_idx, expert_part, expert));
    block.experts_.push_back(mlp);
  }
  if (shard.expert_parallel) block.expert_storage_.assign(block.experts_.size(), nullptr);
  if (moe.shared_intermediate_size > 0) {
    block.has_shared_ = true;
    MS_ASSIGN_OR_RETURN(block.shared_, SwigluMlp::load(weights, kSharedExpertRoles, layer_idx, expert_part));
    MS_ASSIGN_OR_RETURN(block.shared_gate_, weights.whole_if_present(WeightRole::kSharedExpertGate, layer_idx));
  }
  return block;
}

void MoeBlock::set_placement(std::shared_ptr<const ExpertMap> map, std::vector<SwigluMlp> local_experts,
                             std::vector<std::shared_ptr<const Tensor>> storage) {
  MS_CHECK(expert_parallel_ && static_cast<int>(local_experts.size()) == map->slots_per_rank() &&
           storage.size() == local_experts.size());
  map_ = std::move(map);
  experts_ = std::move(local_experts);
  expert_storage_ = std::move(storage);
}

void MoeBlock::forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const {
  const int64_t tokens = x.dim(0);
  const int top_k = router_params_.top_k;

  // Routing runs on every token on every TP rank (the router is replicated and cheap), so the
  // routed-token counts on any rank describe the whole batch.
  Tensor logits(DType::kF32, Shape{tokens, num_experts_});
  ops::linear(ctx.exec, x, router_, TensorView{}, logits.view());
  Tensor expert_ids(DType::kI32, Shape{tokens, top_k});
  Tensor expert_weights(DType::kF32, Shape{tokens, top_k});
  ops::route(ctx.exec, logits.view(), selection_bias_, router_params_, expert_ids.view(), expert_weights.view());
  const std::span<const int32_t> ids(expert_ids.view().as<int32_t>(), static_cast<size_t>(tokens * top_k));
  if (ctx.batch.expert_load != nullptr) {
    int64_t* counts = ctx.batch.expert_load->counts.data() + static_cast<int64_t>(ctx.layer_idx) * num_experts_;
    for (int32_t expert : ids) ++counts[expert];
  }
  if (expert_parallel_) {
    forward_expert_parallel(ctx, x, expert_ids, expert_weights, out);
    return;
  }
  std::fill(out.as<float>(), out.as<float>() + out.numel(), 0.0f);
  const RoutedTokens routed{.x = x,
                            .slots = ids,
                            .weights = {expert_weights.f32(), static_cast<size_t>(tokens * top_k)},
                            .top_k = top_k};
  accumulate_local_experts(ctx.exec, routed, LocalExperts{0, experts_}, out);
  add_shared(ctx.exec, x, out);
  if (ctx.comm.tp != nullptr) ctx.comm.tp->all_reduce_sum(out);
}

void MoeBlock::forward_expert_parallel(LayerContext& ctx, const TensorView& x, const Tensor& expert_ids,
                                       const Tensor& expert_weights, const TensorView& out) const {
  MS_CHECK(ctx.comm.ep != nullptr);
  const ExpertMap& map = *map_;
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  const int top_k = router_params_.top_k;
  // Physical slot of each (token, k): replica = flattened position mod the replica count.
  std::vector<int32_t> slots(static_cast<size_t>(tokens * top_k));
  for (int64_t i = 0; i < tokens * top_k; ++i) slots[i] = map.slot_for(expert_ids.view().as<int32_t>()[i], i);
  ExpertLoad* load = ctx.batch.expert_load;
  if (load != nullptr && !load->slot_counts.empty()) {
    MS_CHECK(load->num_slots == map.num_physical());
    int64_t* counts = load->slot_counts.data() + static_cast<int64_t>(ctx.layer_idx) * load->num_slots;
    for (int32_t slot : slots) ++counts[slot];
  }
  // This TP rank's chunk of the tokens (sequence-parallel MoE).
  auto chunk_begin = [&](int rank) { return tokens * rank / tp_.size; };
  const int64_t begin = chunk_begin(tp_.rank);
  const int64_t count = chunk_begin(tp_.rank + 1) - begin;
  Tensor chunk_out;
  if (tp_.size > 1) chunk_out = Tensor(DType::kF32, Shape{count, hidden});
  const TensorView chunk_view = tp_.size > 1 ? chunk_out.view() : out;
  const RoutedTokens routed{.x = x.rows(begin, count),
                            .slots = std::span<const int32_t>(slots).subspan(begin * top_k, count * top_k),
                            .weights = {expert_weights.f32() + begin * top_k, static_cast<size_t>(count * top_k)},
                            .top_k = top_k};
  const LocalExperts local{ctx.comm.ep->rank() * map.slots_per_rank(), experts_};
  const RunLocalExperts run_local = [&](const RoutedTokens& arrived, const TensorView& partial) {
    std::fill(partial.as<float>(), partial.as<float>() + partial.numel(), 0.0f);
    accumulate_local_experts(ctx.exec, arrived, local, partial);
  };
  switch (all2all_) {
    case All2AllBackend::kAllgatherReducescatter:
      ep_allgather_reducescatter(*ctx.comm.ep, routed, run_local, chunk_view);
      break;
    case All2AllBackend::kAlltoall:
      ep_alltoall(*ctx.comm.ep, routed, run_local, map.slots_per_rank(), chunk_view);
      break;
  }
  add_shared(ctx.exec, routed.x, chunk_view);
  if (tp_.size > 1) {
    std::vector<int64_t> rows(tp_.size);
    for (int rank = 0; rank < tp_.size; ++rank) rows[rank] = chunk_begin(rank + 1) - chunk_begin(rank);
    ctx.comm.tp->all_gather_rows(chunk_view, rows, out);
  }
}

void MoeBlock::add_shared(ExecContext& exec, const TensorView& x, const TensorView& out) const {
  if (!has_shared_) return;
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  Tensor shared_out(DType::kF32, Shape{tokens, hidden});
  shared_.forward(exec, x, shared_out.view());
  std::vector<float> scale(tokens, 1.0f);
  if (shared_gate_.data != nullptr) {
    Tensor gate_logit(DType::kF32, Shape{tokens, 1});
    ops::linear(exec, x, shared_gate_, TensorView{}, gate_logit.view());
    for (int64_t t = 0; t < tokens; ++t) scale[t] = 1.0f / (1.0f + std::exp(-gate_logit.f32()[t]));
  }
  std::vector<int32_t> all_rows(tokens);
  for (int64_t t = 0; t < tokens; ++t) all_rows[t] = static_cast<int32_t>(t);
  ops::scatter_add_rows(exec, shared_out.view(), all_rows, scale, out);
}

}  // namespace moeserve
