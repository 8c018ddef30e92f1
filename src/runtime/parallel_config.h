// ParallelConfig: how one model is spread over ranks of this process (vLLM's
// flags
// --tensor-parallel-size, --data-parallel-size, --enable-expert-parallel,
// --all2all-backend,
// --expert-placement-strategy, EPLB's num_redundant_experts) and the ShardSpec
// of each rank. Rank numbering as vLLM's: global rank = dp_rank × TP + tp_rank,
// which is also the EP rank.
#pragma once

#include "model/parallel.h"

namespace moeserve {

struct ParallelConfig {
  int tensor_parallel_size = 1;
  int data_parallel_size = 1;
  bool enable_expert_parallel = false;
  All2AllBackend all2all = All2AllBackend::kAllgatherReducescatter;
  ExpertPlacement placement = ExpertPlacement::kLinear;
  int num_redundant_experts = 0;
  int threads_per_rank = 1;  // CPU threads of each rank's pool

  int world_size() const { return tensor_parallel_size * data_parallel_size; }
  bool is_single() const { return world_size() == 1; }
  // vLLM: expert parallelism only when asked for and there is more than one
  // rank.
  bool uses_expert_parallel() const { return enable_expert_parallel && world_size() > 1; }

  ShardSpec shard_for(int global_rank) const {
    ShardSpec spec;
    spec.tp = Partition{global_rank % tensor_parallel_size, tensor_parallel_size};
    spec.expert_parallel = uses_expert_parallel();
    if (spec.expert_parallel) spec.ep = Partition{global_rank, world_size()};
    spec.placement = placement;
    spec.all2all = all2all;
    spec.num_redundant_experts = num_redundant_experts;
    return spec;
  }
};

}  // namespace moeserve
