// --distributed-executor-backend mp: the ranks of a parallel layout as worker processes, as
// vLLM's multiprocessing executor lays them out. The engine's process (the one running the
// schedulers) forks and execs its own binary once per rank (`moeserve _worker SPEC`, a hidden
// subcommand). Each worker loads only its rank's shard, joins its replica's TP group and the EP
// group over GlooCommunicator (a TcpStore hosted by the engine on 127.0.0.1, a free port), and
// runs its RankWorker's part of every step the engine sends it over ZeroMQ (runtime/mp/wire.h);
// replica d's TP rank 0 returns the logits and the expert load. EPLB's placements travel the
// same way and the workers move the weights over the EP group.
//
// Over several nodes (parallel.nodes, runtime/multi_node_config.h) the engine starts only the
// workers of its own replicas; the store is at --data-parallel-address:--data-parallel-rpc-port,
// where the engine also publishes the workers' SPEC and the ZeroMQ endpoints of the other nodes'
// ranks, which their --headless node starts (runtime/headless_node.h). A rank of another node
// that does not connect within the ready timeout, or disconnects, fails the group like a worker
// that exits.
//
// Failure: a worker that exits, reports an error (a gloo CommError: a peer died or timed out) or
// cannot be reached is noticed within a second (ZeroMQ polls of 100 ms, waitpid); the engine
// logs the reason, kills the other workers and exits with status 1, which ends every in-flight
// request. Workers die with the engine (PR_SET_PDEATHSIG, and a check of the parent's pid).
// Implemented by runtime/mp/ when gloo and ZeroMQ are found, else by runtime/no_mp/ (refusals).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "runtime/cuda_backend.h"
#include "runtime/loaded_model.h"
#include "runtime/rank_group.h"

namespace moeserve {

struct BuiltProcessRanks {
  std::unique_ptr<RankExecutor> executor;
  int num_kv_blocks = 0;  // per DP replica
};

// Starts one worker per rank of `parallel` and waits until each has loaded its shard and joined
// its groups. The model is read again by every worker from model_dir with `load`. cuda set: each
// rank is a CUDA runner (on GPU rank mod its host's visible GPUs) with these options; num_blocks
// 0 then sizes the KV caches once every worker has loaded and profiled its largest step: per GPU,
// what --gpu-memory-utilization leaves over what a block costs its ranks together, the same
// count for all.
Result<BuiltProcessRanks> make_process_ranks(const std::string& model_dir, const LoadOptions& load,
                                             const ParallelConfig& parallel, int num_blocks, int block_size,
                                             const std::optional<cuda_backend::RunnerOptions>& cuda = std::nullopt);

// The hidden `moeserve _worker SPEC` subcommand: runs one rank until the engine says quit (0) or
// something fails (1, after telling the engine why when it still can).
int run_rank_worker(const std::string& spec);

}  // namespace moeserve
