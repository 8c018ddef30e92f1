// Multi-rank runners behind the Runner seam: one model spread over TP × DP ranks (a RankGroup:
// lockstep steps; the ranks are threads of this process, or worker processes with
// --distributed-executor-backend mp). There is one Runner per DP
// replica — each replica has its own scheduler, KV cache manager and engine — and they share
// the group: a replica's execute() joins the next global step, and replicas with nothing to do
// take part with empty batches. With DP 1 the single runner is a drop-in for the CPU runner.
#pragma once

#include <memory>
#include <vector>

#include "runtime/loaded_model.h"
#include "runtime/rank_group.h"
#include "runtime/runner.h"

namespace moeserve {

struct ParallelRunnerOptions {
  ParallelConfig parallel;
  int num_kv_blocks = 0;  // per DP replica, > 0
  int block_size = 16;
  ModelOptions model;  // shard is filled in per rank
};

// Shares ownership of the group (and the weights it views) among the returned runners.
struct ParallelRunners {
  std::vector<std::unique_ptr<Runner>> replicas;  // one per DP replica
  std::shared_ptr<RankGroup> group;
};

// `weights` is moved into the group's shared state (the unsharded model, if any, is dropped).
// The ranks run as options.parallel.executor says: threads of this process (from `weights`), or
// worker processes (mp: each reads model_dir again with `load`; `weights` may be null).
Result<ParallelRunners> make_parallel_runners(std::unique_ptr<WeightSource> weights, const ModelConfig& config,
                                              const ParallelRunnerOptions& options);
Result<ParallelRunners> make_parallel_runners(std::unique_ptr<WeightSource> weights, const ModelConfig& config,
                                              const ParallelRunnerOptions& options, const std::string& model_dir,
                                              const LoadOptions& load);

}  // namespace moeserve
