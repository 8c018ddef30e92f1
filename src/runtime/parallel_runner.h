// Multi-rank runners behind the Runner seam: one model spread over TP × DP ranks (a RankGroup:
// lockstep steps; the ranks are threads of this process, or worker processes with
// --distributed-executor-backend mp). There is one Runner per DP
// replica — each replica has its own scheduler, KV cache manager and engine — and they share
// the group: a replica's execute() joins the next global step, and replicas with nothing to do
// take part with empty batches. With DP 1 the single runner is a drop-in for the CPU runner.
#pragma once

#include <memory>
#include <vector>

#include <optional>

#include "runtime/cuda_backend.h"
#include "runtime/loaded_model.h"
#include "runtime/rank_group.h"
#include "runtime/runner.h"

namespace moeserve {

struct ParallelRunnerOptions {
  ParallelConfig parallel;
  int num_kv_blocks = 0;  // per DP replica, > 0 (CUDA ranks: 0 sizes it from GPU memory)
  int block_size = 16;
  ModelOptions model;  // shard is filled in per rank
  // Set: the ranks are CUDA runners (threads: cuda_backend::make_ranks; worker processes:
  // cuda_backend::make_rank in each), with these options (block_size and num_kv_blocks above take
  // precedence).
  std::optional<cuda_backend::RunnerOptions> cuda;
};

// Shares ownership of the group (and the weights it views) among the returned runners.
struct ParallelRunners {
  std::vector<std::unique_ptr<Runner>> replicas;  // one per DP replica
  std::shared_ptr<RankGroup> group;
  std::string summary;  // CUDA ranks: what each rank holds, for the start-up log
};

// The ranks run as options.parallel.executor says: threads of this process, each loading its
// shard from the weights opened here (open_weights(model_dir, load), kept alive with the group),
// or worker processes (mp), each reading model_dir itself with `load`; with options.cuda, CUDA
// runners (rank r on GPU r mod its host's GPUs). No unsharded model is built.
Result<ParallelRunners> make_parallel_runners(const std::string& model_dir, const ModelConfig& config,
                                              const LoadOptions& load, const ParallelRunnerOptions& options);

}  // namespace moeserve
