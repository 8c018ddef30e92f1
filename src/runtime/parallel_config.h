// ParallelConfig: how one model is spread over ranks of this process (vLLM's
// flags
// --tensor-parallel-size, --data-parallel-size, --enable-expert-parallel,
// --all2all-backend,
// --expert-placement-strategy, EPLB's num_redundant_experts) and the ShardSpec
// of each rank. Rank numbering as vLLM's: global rank = dp_rank × TP + tp_rank,
// which is also the EP rank.
#pragma once

#include <string>

#include "model/parallel.h"
#include "runtime/multi_node_config.h"

namespace moeserve {

// vLLM's EPLBConfig (--eplb-config JSON), with its defaults.
struct EplbConfig {
  bool enabled = false;  // --enable-eplb
  int window_size = 1000;
  int step_interval = 3000;
  int num_redundant_experts = 0;
  bool log_balancedness = false;
  int log_balancedness_interval = 1;
};

// Parses --eplb-config: a JSON object of EPLBConfig fields; unknown fields and bad values are
// refused by name. (use_async/policy/communicator are accepted with their only CPU meaning.)
Result<EplbConfig> parse_eplb_config(const std::string& json_text, bool enabled);

// --distributed-executor-backend: how the ranks of a parallel layout run. vLLM's names: mp (one
// worker process per rank, over gloo, driven by the engine over ZeroMQ), uni (one process: only
// for one rank), and moeserve's threads (every rank a thread of the engine's process, over an
// in-process communicator). vLLM's ray and external_launcher are refused.
enum class DistributedExecutor { kThreads, kMp, kUni };
Result<DistributedExecutor> parse_distributed_executor(const std::string& name);

struct ParallelConfig {
  int tensor_parallel_size = 1;
  int data_parallel_size = 1;
  bool enable_expert_parallel = false;
  All2AllBackend all2all = All2AllBackend::kAllgatherReducescatter;
  ExpertPlacement placement = ExpertPlacement::kLinear;
  int num_redundant_experts = 0;
  int threads_per_rank = 1;  // CPU threads of each rank's pool
  DistributedExecutor executor = DistributedExecutor::kThreads;
  EplbConfig eplb;
  MultiNodeConfig nodes;  // which DP replicas run on this node (all of them unless multi-node flags say)

  int world_size() const { return tensor_parallel_size * data_parallel_size; }
  // The ranks of this node's replicas (global rank = dp_rank × TP + tp_rank).
  int local_world_size() const { return nodes.local_replicas(data_parallel_size) * tensor_parallel_size; }
  bool is_local_rank(int global_rank) const {
    return nodes.is_local_replica(global_rank / tensor_parallel_size, data_parallel_size);
  }
  bool is_single() const { return world_size() == 1; }
  // vLLM: expert parallelism only when asked for and there is more than one
  // rank.
  bool uses_expert_parallel() const { return enable_expert_parallel && world_size() > 1; }

  // The vLLM rules between the flags (EPLB needs expert parallelism over more than one rank,
  // redundant experts need EPLB, …), checked before any weight is loaded.
  Status validate() const;

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
