// RankGroup: one model spread over TP × DP ranks, every step global and in lockstep: each DP
// replica contributes a batch, and a replica with nothing to run takes part with an empty batch,
// so the MoE collectives never wait forever. Two ways in: step() runs one step for all replicas
// at once (tests, single-sequence CLI), and execute(dp_rank, seqs) lets one scheduler per DP
// replica submit from its own thread; the submissions that are waiting when a step starts run
// together in it.
//
// The ranks themselves sit behind a RankExecutor, the transport: each rank is a RankWorker (its
// ModelRunner over its shard on some backend, and its communicators, which runs "my part of this
// step" and "move to this EPLB placement"), and the executor runs every rank's part. ThreadRanks
// (here) holds all shards in this process, one worker thread each, joined by in-process
// communicators; runtime/mp/ runs one worker process per rank over gloo, driven over ZeroMQ
// (--distributed-executor-backend mp). The group keeps what the engine needs whichever runs the
// ranks: per-replica expert loads, the EP accounting, and EPLB — it decides each rearrangement
// (rank_group_eplb.cpp) and the executor applies it on every rank in the same job, after the
// weights each rank lacks have arrived from their owners over the EP communicator.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "runtime/cpu_model.h"
#include "runtime/model_runner.h"
#include "runtime/eplb_state.h"
#include "runtime/parallel_config.h"

namespace moeserve {

// One MoE layer's part of an EPLB rearrangement: how many of its physical slots changed, and
// each (logical expert, EP rank) where a rank now holds an expert it did not hold before (the
// weights that travelled).
struct EplbLayerMove {
  int layer = 0;          // the model's layer index
  int slots_changed = 0;  // physical slots whose logical expert changed
  struct Arrival {
    int expert = 0;  // logical expert
    int rank = 0;    // EP rank it moved to
  };
  std::vector<Arrival> arrivals;
};

// One applied EPLB rearrangement, as its log line reports it.
struct EplbRearrangement {
  int index = 0;                     // 1 for the first
  int64_t step = 0;                  // the group's step after which it ran
  double balancedness_before = 1.0;  // expected mean / max tokens per EP rank over the window's loads
  double balancedness_after = 1.0;
  std::vector<EplbLayerMove> layers;  // the layers with at least one changed slot
};

// Expert-parallel counters (cumulative over the group's life).
struct EpStats {
  std::vector<int64_t> rank_tokens_total;  // [EP ranks]: (token, expert) assignments computed per EP rank
  double balancedness = 1.0;               // mean / max tokens per EP rank, last step with tokens
  int rearrangements = 0;                  // EPLB placements applied
  // The last kRecentRearrangements of them, oldest first (index = rearrangements for the last).
  static constexpr size_t kRecentRearrangements = 16;
  std::vector<EplbRearrangement> recent_rearrangements;
};

// One rank of a parallel layout on any backend, as the executors drive it: its ModelRunner (its
// shard of the weights; its KV cache, its heads' part of its replica's) and its communicators
// (its replica's TP group, the EP group). The same class runs a rank on a thread of the engine
// (ThreadRanks) and in a worker process (runtime/mp/).
class RankWorker {
 public:
  RankWorker(int tp_rank, std::unique_ptr<ModelRunner> runner) : tp_rank_(tp_rank), runner_(std::move(runner)) {}

  bool is_tp_leader() const { return tp_rank_ == 0; }
  size_t kv_bytes() const { return runner_->kv_memory_bytes(); }
  ModelRunner& runner() { return *runner_; }
  ExpertSlots& expert_slots() { return runner_->device().expert_slots(); }
  // tp: its replica's TP group (null with TP 1); ep: the EP group (null without EP).
  void set_communicators(std::unique_ptr<Communicator> tp, std::unique_ptr<Communicator> ep);
  // Once, on the thread that then runs every job of this rank (CUDA: selects the rank's GPU).
  void bind_thread() { runner_->device().bind_thread(); }
  // This rank's part of one step of its replica's batch (every rank of its groups must run it).
  // out [logit_rows(batch), vocab]: the replica's logits, every row (every TP rank computes the
  // same ones, the LM head being replicated; the replica's runner picks the tokens); load: adds
  // the replica's routed tokens (its TP rank 0 counts them; null elsewhere).
  void forward(std::span<const RunnerSeq> batch, const TensorView& out, ExpertLoad* load);
  // Moves to new_maps (one per MoE layer in `moe_layers`): sends the experts other ranks newly
  // need over the EP group, then swaps in the new map and slot experts at once. Collective: every
  // rank of the EP group runs it with the same maps (rank_group_eplb.cpp).
  void apply_placement(std::span<const int> moe_layers, const std::vector<std::shared_ptr<const ExpertMap>>& new_maps);

 private:
  int tp_rank_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Communicator> tp_, ep_;
  std::vector<RunnerSeq> seqs_;  // the batch without choices
};

// A CPU rank: global rank `rank`'s shard loaded from `weights` (copied: they need not outlive
// it), its KV cache of num_blocks blocks and a pool of parallel.threads_per_rank threads.
Result<std::unique_ptr<RankWorker>> load_cpu_rank(const ModelConfig& config, const WeightSource& weights,
                                                  const ParallelConfig& parallel, const ModelOptions& options, int rank,
                                                  int num_blocks, int block_size);

// A zeroed ExpertLoad of one step: counts per (layer, logical expert), and with num_physical > 0
// (expert parallelism) per (layer, physical slot).
ExpertLoad empty_step_load(const ModelConfig& config, int num_physical);

// Runs the ranks: the transport between the group and its RankWorkers.
class RankExecutor {
 public:
  virtual ~RankExecutor() = default;
  // Runs every rank's part of one lockstep step: batches[d] is DP replica d's batch; logits[d]
  // (shaped [logit_rows(batches[d]), vocab]) and loads[d] (empty_step_load) get replica d's, from
  // its TP rank 0. Throws std::runtime_error when a rank failed (the group is unusable after).
  virtual void step(std::span<const std::vector<RunnerSeq>> batches, std::span<Tensor> logits,
                    std::span<ExpertLoad> loads) = 0;
  // Every rank moves to new_maps (RankWorker::apply_placement) in the same job.
  virtual void apply_placement(std::span<const int> moe_layers,
                               const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) = 0;
  // KV bytes the ranks of DP replica dp_rank hold together.
  virtual size_t kv_memory_bytes(int dp_rank) const = 0;
  // "threads" or "processes", for the layout line.
  virtual const char* kind() const = 0;
  // Rank `rank`'s expert slots when it lives in this process (threads), else null.
  virtual ExpertSlots* local_slots(int rank) { return nullptr; }
};

// Every rank on a worker thread of this process, joined by in-process communicators
// (--distributed-executor-backend threads): CPU ranks loaded from `weights`.
Result<std::unique_ptr<RankExecutor>> make_thread_ranks(const ModelConfig& config, const WeightSource& weights,
                                                        const ParallelConfig& parallel, const ModelOptions& options,
                                                        int num_blocks, int block_size);
// The same over loaded workers of any backend, workers[r] global rank r's.
std::unique_ptr<RankExecutor> make_thread_ranks(const ParallelConfig& parallel,
                                                std::vector<std::unique_ptr<RankWorker>> workers);

class RankGroup {
 public:
  // Ranks on threads of this process: loads every rank's shard from `weights` (which must
  // outlive the group). num_blocks / block_size: each DP replica's KV cache (each of its TP ranks
  // holds its heads' part).
  static Result<std::unique_ptr<RankGroup>> create(const ModelConfig& config, const WeightSource& weights,
                                                   const ParallelConfig& parallel, const ModelOptions& options,
                                                   int num_blocks, int block_size);
  // Over ranks that `ranks` runs (already loaded with this layout).
  static Result<std::unique_ptr<RankGroup>> create(const ModelConfig& config, const ParallelConfig& parallel,
                                                   std::unique_ptr<RankExecutor> ranks, int num_blocks, int block_size);
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParallelConfig& parallel() const { return parallel_; }
  int num_kv_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  // KV bytes a DP replica's ranks hold together.
  size_t kv_memory_bytes(int dp_rank) const { return ranks_->kv_memory_bytes(dp_rank); }
  // "EP 4 = TP 2 × DP 2 (allgather_reducescatter), experts 0-1 on rank 0, …"
  // (or "TP 2 × DP 1").
  std::string describe_layout() const;
  const char* executor_kind() const { return ranks_->kind(); }

  // One lockstep step: batches[d] are DP replica d's sequences (empty: it
  // idles). Logits per replica as ModelRunner::execute returns them.
  std::vector<Tensor> step(std::span<const std::vector<RunnerSeq>> batches);
  // Thread-safe: submits replica dp_rank's sequences and waits for the step
  // that ran them.
  Tensor execute(int dp_rank, std::span<const RunnerSeq> seqs);

  EpStats ep_stats() const;

  // Routed-token counts of replica dp_rank's tokens since its last reset.
  const ExpertLoad& expert_load(int dp_rank) const { return expert_loads_[dp_rank]; }
  void reset_expert_load(int dp_rank);

  // A rank's expert slots, for tests looking at its placement: the threads executor only.
  ExpertSlots& model(int global_rank) {
    ExpertSlots* slots = ranks_->local_slots(global_rank);
    MS_CHECK(slots != nullptr);
    return *slots;
  }

 private:
  RankGroup() = default;
  std::vector<Tensor> run_step(std::span<const std::vector<RunnerSeq>> batches);
  // rank_group_eplb.cpp: per-step EP accounting, EPLB's trigger and the rearrangement.
  void after_step(const std::vector<ExpertLoad>& step_loads);
  void rearrange_experts();

  ModelConfig config_;
  ParallelConfig parallel_;
  int num_blocks_ = 0;
  int block_size_ = 0;
  std::unique_ptr<RankExecutor> ranks_;
  std::vector<ExpertLoad> expert_loads_;  // per DP replica
  std::vector<int> moe_layers_;
  std::vector<std::shared_ptr<const ExpertMap>> maps_;  // the ranks' current placement, per MoE layer (EP only)
  int num_physical_ = 0;                                // expert slots per MoE layer (EP only)
  std::unique_ptr<EplbState> eplb_;
  int64_t steps_ = 0;
  mutable std::mutex stats_mutex_;
  EpStats ep_stats_;

  // execute(): submissions waiting for a step, and the step in flight.
  std::mutex submit_mutex_;
  std::condition_variable submit_cv_;
  std::vector<const std::span<const RunnerSeq>*> pending_;  // per DP replica, null = none
  std::vector<Tensor*> pending_out_;
  std::vector<bool> in_step_;
  std::vector<bool> done_;
  std::vector<std::string> failed_;  // per DP replica: why its step failed (empty: it did not)
  bool step_running_ = false;
};

}  // namespace moeserve
