// CUDA ranks of a parallel layout (TP × DP, with or without expert parallelism), one ModelRunner
// over a CudaRunnerDevice each, run by the threads executor (rank_group.h's make_thread_ranks): rank r on GPU r mod the
// visible GPUs, so every layout also runs with all its ranks on one GPU (how the GPU tests check
// it). Each rank loads only its shard (ShardSpec) from the weights, runs the one decoder loop with
// its TP group's collectives through a StagedCommunicator and its EP dispatch staged through the
// host by the loop (correct, not fast; NCCL is issue 22's), eagerly, and returns every logits
// row: the group's replica runner picks the tokens. EPLB moves experts between the ranks' device
// memory through the host (runtime/expert_slots.h).
#pragma once

#include <memory>
#include <string>

#include "backend/cuda/cuda_runner_device.h"
#include "runtime/rank_group.h"

namespace moeserve {

struct CudaRanks {
  std::unique_ptr<RankExecutor> executor;
  int num_kv_blocks = 0;  // per DP replica (each TP rank holds its heads' part)
  std::string summary;    // for the start-up log: weights, precision, KV cache per rank
};

// weights: the checkpoint (host memory), or null for random weights made on each rank's GPU
// (--load-format dummy). device / runner: every rank's options (its GPU, shard and KV cache are
// set here). With runner.num_kv_blocks = 0 the ranks' KV caches take what gpu_memory_utilization
// leaves on each GPU after every rank has loaded and profiled its largest step, the same block
// count for all.
// Global rank `rank` of `parallel` on GPU rank mod the visible GPUs: its shard of `weights` (null:
// random weights made on its GPU), its runner (with runner.num_kv_blocks = 0, no KV cache until
// allocate_kv_cache: the layout sizes them together).
Result<std::unique_ptr<RankWorker>> make_cuda_rank(const ModelConfig& config, const WeightSource* weights,
                                                   uint64_t seed, const ParallelConfig& parallel, int rank,
                                                   const CudaDeviceOptions& device, const ModelRunnerOptions& runner);

Result<CudaRanks> make_cuda_ranks(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                  const ParallelConfig& parallel, const CudaDeviceOptions& device,
                                  const ModelRunnerOptions& runner);

}  // namespace moeserve
