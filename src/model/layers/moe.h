// The MoE block, split as router → dispatch → experts → combine (so any all-to-all backend sits
// between dispatch and combine): route every token to top_k experts, run each expert that
// received tokens on exactly those rows, add the weighted outputs back, plus the shared
// experts (Qwen2-MoE: scaled by sigmoid(x · shared_expert_gate)).
// Parallel layouts (model/parallel.h): without expert parallelism every expert and the shared
// experts are tensor-split over the TP ranks and the block's partial output is all-reduced once;
// with it, the rank holds whole experts in its physical slots (ExpertMap), each TP rank takes a
// contiguous chunk of the tokens (so each token is dispatched once), the chunk goes through the
// EP dispatch/combine (moe_dispatch.h) and the replicated shared experts, and an all-gather over
// TP gives every TP rank all rows again.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/expert_map.h"
#include "model/layers/mlp.h"

namespace moeserve {

// The router's parameters for a MoE config (every backend routes with these).
ops::RouterParams router_params(const MoeConfig& moe);

class MoeBlock {
 public:
  static Result<MoeBlock> load(const ModelConfig& config, const ShardedWeights& weights, int layer_idx,
                               const ShardSpec& shard = {});

  // x [T, hidden] → out [T, hidden].
  void forward(LayerContext& ctx, const TensorView& x, const TensorView& out) const;

  // Expert parallelism: the slot map and the experts in this rank's slots (in slot order).
  bool expert_parallel() const { return expert_parallel_; }
  const ExpertMap& expert_map() const { return *map_; }
  std::span<const SwigluMlp> local_experts() const { return experts_; }
  std::shared_ptr<const ExpertMap> expert_map_ptr() const { return map_; }
  // Memory behind each local expert's views (null: the checkpoint's mmap).
  std::span<const std::shared_ptr<const Tensor>> local_expert_storage() const { return expert_storage_; }
  // Replaces the map and this rank's slot experts at once (EPLB, between steps); storage keeps
  // the experts' weights alive (null entries: views into the checkpoint).
  void set_placement(std::shared_ptr<const ExpertMap> map, std::vector<SwigluMlp> local_experts,
                     std::vector<std::shared_ptr<const Tensor>> storage);

 private:
  void forward_expert_parallel(LayerContext& ctx, const TensorView& x, const Tensor& expert_ids,
                               const Tensor& expert_weights, const TensorView& out) const;
  // out += the shared experts' output for x (this rank's partial when tensor-split).
  void add_shared(ExecContext& exec, const TensorView& x, const TensorView& out) const;

  ops::RouterParams router_params_;
  int num_experts_ = 0;        // logical experts
  TensorView router_;          // [E, hidden]
  TensorView selection_bias_;  // [E] e_score_correction_bias, or null
  // Without EP: every logical expert (this rank's TP slice). With EP: the experts in this
  // rank's slots, in slot order.
  std::vector<SwigluMlp> experts_;
  bool expert_parallel_ = false;
  Partition tp_;
  Partition ep_;
  All2AllBackend all2all_ = All2AllBackend::kAllgatherReducescatter;
  std::shared_ptr<const ExpertMap> map_;  // EP only
  std::vector<std::shared_ptr<const Tensor>> expert_storage_;  // EP only, per local slot
  bool has_shared_ = false;
  SwigluMlp shared_;
  TensorView shared_gate_;  // [1, hidden] or null
};

}  // namespace moeserve
