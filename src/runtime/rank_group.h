// RankGroup: one model spread over TP × DP ranks of this process, one worker
// thread per rank (each with its own small thread pool, sharded CpuModel
// and KV memory), joined by in-process communicators (a TP group per DP
// replica, and the EP group over all ranks). Every step is global and in
// lockstep: each DP replica contributes a batch, and a replica with nothing to
// run takes part with an empty batch, so the MoE collectives never wait
// forever. Two ways in: step() runs one step for all replicas at once (tests,
// single-sequence CLI), and execute(dp_rank, seqs) lets one scheduler per DP
// replica submit from its own thread; the submissions that are waiting when a
// step starts run together in it.
// With expert parallelism it counts tokens per EP rank, and with EPLB it
// rearranges the experts between steps (rank_group_eplb.cpp): every rank swaps
// to the new placement in the same job, after the weights it lacks have arrived
// from their owners over the EP communicator.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/local/local_communicator.h"
#include "kvcache/kv_memory.h"
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

class RankGroup {
 public:
  // Loads every rank's shard from `weights` (which must outlive the group).
  // num_blocks / block_size: each DP replica's KV cache (each of its TP ranks
  // holds its heads' part).
  static Result<std::unique_ptr<RankGroup>> create(const ModelConfig& config, const WeightSource& weights,
                                                   const ParallelConfig& parallel, const ModelOptions& options,
                                                   int num_blocks, int block_size);
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  const ModelConfig& config() const { return models_[0]->config(); }
  const ParallelConfig& parallel() const { return parallel_; }
  int num_kv_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  // KV bytes a DP replica's ranks hold together.
  size_t kv_memory_bytes(int dp_rank) const;
  // "EP 4 = TP 2 × DP 2 (allgather_reducescatter), experts 0-1 on rank 0, …"
  // (or "TP 2 × DP 1").
  std::string describe_layout() const;

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

  // Runs fn(global_rank) on every rank's worker thread at once and waits
  // (between steps; EPLB uses it to move expert weights collectively).
  void run_on_all_ranks(const std::function<void(int rank)>& fn);
  CpuModel& model(int global_rank) { return *models_[global_rank]; }
  Communicator* ep_comm(int global_rank) { return ep_comms_.empty() ? nullptr : ep_comms_[global_rank].get(); }

 private:
  RankGroup() = default;
  void worker_loop(int rank);
  std::vector<Tensor> run_step(std::span<const std::vector<RunnerSeq>> batches);
  ExpertLoad empty_step_load() const;
  // rank_group_eplb.cpp: per-step EP accounting, EPLB's trigger and the weight moves.
  void after_step(const std::vector<ExpertLoad>& step_loads);
  void rearrange_experts();
  void move_expert_weights(int rank, const std::vector<std::shared_ptr<const ExpertMap>>& new_maps);

  ParallelConfig parallel_;
  int num_blocks_ = 0;
  int block_size_ = 0;
  std::vector<std::unique_ptr<CpuModel>> models_;  // per global rank
  std::vector<std::unique_ptr<KvMemory>> kv_;
  std::vector<ExpertLoad> expert_loads_;  // per DP replica
  std::vector<std::unique_ptr<LocalGroup>> tp_groups_;
  std::unique_ptr<LocalGroup> ep_group_;
  std::vector<std::unique_ptr<Communicator>> tp_comms_,
      ep_comms_;                                    // per global rank (empty when unused)
  std::vector<std::unique_ptr<ThreadPool>> pools_;  // per global rank
  std::vector<ExecContext> execs_;
  std::vector<int> moe_layers_;
  int num_physical_ = 0;  // expert slots per MoE layer (EP only)
  std::unique_ptr<EplbState> eplb_;
  int64_t steps_ = 0;
  mutable std::mutex stats_mutex_;
  EpStats ep_stats_;

  // Workers: a generation counter announces each job; `remaining_` counts ranks
  // still on it.
  std::vector<std::thread> workers_;
  std::mutex work_mutex_;
  std::condition_variable work_ready_, work_done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int remaining_ = 0;
  bool stopping_ = false;

  // execute(): submissions waiting for a step, and the step in flight.
  std::mutex submit_mutex_;
  std::condition_variable submit_cv_;
  std::vector<const std::span<const RunnerSeq>*> pending_;  // per DP replica, null = none
  std::vector<Tensor*> pending_out_;
  std::vector<bool> in_step_;
  std::vector<bool> done_;
  bool step_running_ = false;
};

}  // namespace moeserve
