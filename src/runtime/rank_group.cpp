#include "runtime/rank_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "comm/local/local_communicator.h"
#include "runtime/cpu_runner.h"

namespace moeserve {

namespace {

ExpertLoad empty_load(const ModelConfig& config) {
  const int experts = config.moe ? config.moe->num_experts : 0;
  return ExpertLoad{std::vector<int64_t>(static_cast<size_t>(config.num_layers) * experts, 0), experts};
}

// Every rank's shard in this process, one worker thread per rank, joined by in-process
// communicators; a generation counter announces each job and `remaining_` counts the ranks still
// on it.
class ThreadRanks final : public RankExecutor {
 public:
  // The shards' communicators come from tp_groups (one per DP replica, empty with TP 1) and
  // ep_group (null without EP), which the executor keeps until the shards are gone.
  ThreadRanks(const ParallelConfig& parallel, std::vector<std::unique_ptr<LocalGroup>> tp_groups,
              std::unique_ptr<LocalGroup> ep_group, std::vector<std::unique_ptr<RankWorker>> shards)
      : parallel_(parallel),
        tp_groups_(std::move(tp_groups)),
        ep_group_(std::move(ep_group)),
        shards_(std::move(shards)) {
    for (int rank = 0; rank < static_cast<int>(shards_.size()); ++rank) {
      workers_.emplace_back([this, rank] { worker_loop(rank); });
    }
  }
  ~ThreadRanks() override {
    {
      std::lock_guard<std::mutex> lock(work_mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  void step(std::span<const std::vector<RunnerSeq>> batches, std::span<Tensor> logits,
            std::span<ExpertLoad> loads) override {
    const int tp = parallel_.tensor_parallel_size;
    std::vector<Tensor> scratch(shards_.size());
    run_on_all_ranks([&](int rank) {
      const int dp_rank = rank / tp;
      RankWorker& shard = *shards_[rank];
      TensorView out = logits[dp_rank].view();
      if (!shard.is_tp_leader()) {
        scratch[rank] = Tensor(DType::kF32, logits[dp_rank].shape());
        out = scratch[rank].view();
      }
      shard.forward(batches[dp_rank], out, shard.is_tp_leader() ? &loads[dp_rank] : nullptr);
    });
  }
  void apply_placement(std::span<const int> moe_layers,
                       const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) override {
    run_on_all_ranks([&](int rank) { shards_[rank]->apply_placement(moe_layers, new_maps); });
  }
  size_t kv_memory_bytes(int dp_rank) const override {
    size_t bytes = 0;
    const int tp = parallel_.tensor_parallel_size;
    for (int rank = dp_rank * tp; rank < (dp_rank + 1) * tp; ++rank) bytes += shards_[rank]->kv_bytes();
    return bytes;
  }
  const char* kind() const override { return "threads"; }
  ExpertSlots* local_slots(int rank) override { return &shards_[rank]->expert_slots(); }

 private:
  void worker_loop(int rank) {
    shards_[rank]->bind_thread();
    uint64_t seen = 0;
    while (true) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(work_mutex_);
        work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(rank);
      std::lock_guard<std::mutex> lock(work_mutex_);
      if (--remaining_ == 0) work_done_.notify_all();
    }
  }
  // Runs fn(global_rank) on every rank's worker thread at once and waits.
  void run_on_all_ranks(const std::function<void(int rank)>& fn) {
    std::unique_lock<std::mutex> lock(work_mutex_);
    job_ = &fn;
    remaining_ = static_cast<int>(workers_.size());
    ++generation_;
    work_ready_.notify_all();
    work_done_.wait(lock, [&] { return remaining_ == 0; });
    job_ = nullptr;
  }

  ParallelConfig parallel_;
  std::vector<std::unique_ptr<LocalGroup>> tp_groups_;  // declared before the shards: destroyed after them
  std::unique_ptr<LocalGroup> ep_group_;
  std::vector<std::unique_ptr<RankWorker>> shards_;
  std::vector<std::thread> workers_;
  std::mutex work_mutex_;
  std::condition_variable work_ready_, work_done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int remaining_ = 0;
  bool stopping_ = false;
};

}  // namespace

ExpertLoad empty_step_load(const ModelConfig& config, int num_physical) {
  ExpertLoad load = empty_load(config);
  if (num_physical > 0) {
    load.num_slots = num_physical;
    load.slot_counts.assign(static_cast<size_t>(config.num_layers) * num_physical, 0);
  }
  return load;
}

Result<std::unique_ptr<RankWorker>> load_cpu_rank(const ModelConfig& config, const WeightSource& weights,
                                                  const ParallelConfig& parallel, const ModelOptions& options, int rank,
                                                  int num_blocks, int block_size) {
  ModelOptions rank_options = options;
  rank_options.shard = parallel.shard_for(rank);
  MS_ASSIGN_OR_RETURN(std::unique_ptr<CpuModel> model, CpuModel::load(config, weights, rank_options));
  auto pool = std::make_unique<ThreadPool>(std::max(1, parallel.threads_per_rank));
  const ExecContext exec{pool.get()};
  MS_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner,
                      ModelRunner::create(std::make_unique<CpuDevice>(std::move(model), exec, std::move(pool)),
                                          cpu_runner_options(num_blocks, block_size)));
  return std::make_unique<RankWorker>(rank % parallel.tensor_parallel_size, std::move(runner));
}

void RankWorker::set_communicators(std::unique_ptr<Communicator> tp, std::unique_ptr<Communicator> ep) {
  tp_ = tp == nullptr ? nullptr : runner_->device().device_communicator(std::move(tp));
  ep_ = ep == nullptr ? nullptr : runner_->device().device_communicator(std::move(ep));
  runner_->set_communicators(ParallelComm{.tp = tp_.get(), .ep = ep_.get()});
}

void RankWorker::forward(std::span<const RunnerSeq> batch, const TensorView& out, ExpertLoad* load) {
  // Every row comes back: the replica's runner picks the tokens.
  seqs_.assign(batch.begin(), batch.end());
  for (RunnerSeq& seq : seqs_) seq.choice = nullptr;
  const Tensor logits = runner_->execute(seqs_);
  MS_CHECK(logits.view().nbytes() == out.nbytes());
  if (out.nbytes() > 0) std::memcpy(out.data, logits.view().data, out.nbytes());
  if (load != nullptr) {
    const ExpertLoad& counted = runner_->expert_load();
    for (size_t i = 0; i < load->counts.size(); ++i) load->counts[i] += counted.counts[i];
    MS_CHECK(load->slot_counts.empty() || load->slot_counts.size() == counted.slot_counts.size());
    for (size_t i = 0; i < load->slot_counts.size(); ++i) load->slot_counts[i] += counted.slot_counts[i];
  }
  runner_->reset_expert_load();
}

void RankWorker::apply_placement(std::span<const int> moe_layers,
                                 const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) {
  MS_CHECK_MSG(ep_ != nullptr, "EPLB needs the EP communicator");
  apply_expert_placement(ep_->host_group(), ep_->rank(), moe_layers, new_maps, expert_slots());
}

Result<std::unique_ptr<RankExecutor>> make_thread_ranks(const ModelConfig& config, const WeightSource& weights,
                                                        const ParallelConfig& parallel, const ModelOptions& options,
                                                        int num_blocks, int block_size) {
  std::vector<std::unique_ptr<RankWorker>> shards;
  for (int rank = 0; rank < parallel.world_size(); ++rank) {
    MS_ASSIGN_OR_RETURN(auto shard, load_cpu_rank(config, weights, parallel, options, rank, num_blocks, block_size));
    shards.push_back(std::move(shard));
  }
  return make_thread_ranks(parallel, std::move(shards));
}

std::unique_ptr<RankExecutor> make_thread_ranks(const ParallelConfig& parallel,
                                                std::vector<std::unique_ptr<RankWorker>> shards) {
  const int world = parallel.world_size();
  const int tp = parallel.tensor_parallel_size;
  MS_CHECK(static_cast<int>(shards.size()) == world);
  std::vector<std::unique_ptr<LocalGroup>> tp_groups;
  if (tp > 1) {
    for (int dp_rank = 0; dp_rank < parallel.data_parallel_size; ++dp_rank) {
      tp_groups.push_back(std::make_unique<LocalGroup>(tp));
    }
  }
  std::unique_ptr<LocalGroup> ep_group = parallel.uses_expert_parallel() ? std::make_unique<LocalGroup>(world)
                                                                         : nullptr;
  for (int rank = 0; rank < world; ++rank) {
    shards[rank]->set_communicators(tp > 1 ? tp_groups[rank / tp]->communicator(rank % tp) : nullptr,
                                    ep_group ? ep_group->communicator(rank) : nullptr);
  }
  return std::make_unique<ThreadRanks>(parallel, std::move(tp_groups), std::move(ep_group), std::move(shards));
}

Result<std::unique_ptr<RankGroup>> RankGroup::create(const ModelConfig& config, const WeightSource& weights,
                                                     const ParallelConfig& parallel, const ModelOptions& options,
                                                     int num_blocks, int block_size) {
  if (parallel.tensor_parallel_size < 1 || parallel.data_parallel_size < 1) {
    return make_error("--tensor-parallel-size and --data-parallel-size must be at least 1");
  }
  MS_ASSIGN_OR_RETURN(auto ranks, make_thread_ranks(config, weights, parallel, options, num_blocks, block_size));
  return create(config, parallel, std::move(ranks), num_blocks, block_size);
}

Result<std::unique_ptr<RankGroup>> RankGroup::create(const ModelConfig& config, const ParallelConfig& parallel,
                                                     std::unique_ptr<RankExecutor> ranks, int num_blocks,
                                                     int block_size) {
  if (parallel.tensor_parallel_size < 1 || parallel.data_parallel_size < 1) {
    return make_error("--tensor-parallel-size and --data-parallel-size must be at least 1");
  }
  std::unique_ptr<RankGroup> group(new RankGroup());
  group->config_ = config;
  group->parallel_ = parallel;
  group->num_blocks_ = num_blocks;
  group->block_size_ = block_size;
  group->ranks_ = std::move(ranks);
  const int world = parallel.world_size();
  const int dp = parallel.data_parallel_size;
  group->expert_loads_.assign(dp, empty_load(config));
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (config.layer_is_moe[layer]) group->moe_layers_.push_back(layer);
  }
  if (parallel.uses_expert_parallel() && !group->moe_layers_.empty()) {
    group->num_physical_ = config.moe->num_experts + parallel.num_redundant_experts;
    group->ep_stats_.rank_tokens_total.assign(world, 0);
    // The ranks' initial placement (as each shard's weights were loaded).
    const ShardSpec shard = parallel.shard_for(0);
    const auto initial = std::make_shared<const ExpertMap>(
        ExpertMap::initial(config.moe->num_experts, shard.num_redundant_experts, shard.ep.size, shard.placement));
    group->maps_.assign(group->moe_layers_.size(), initial);
    if (parallel.eplb.enabled) {
      const eplb::RebalanceParams params{.num_physical = group->num_physical_,
                                         .num_groups = config.moe->num_groups,
                                         .num_nodes = 1,  // one host: every rank shares one memory
                                         .num_ranks = world};
      group->eplb_ = std::make_unique<EplbState>(parallel.eplb, config.num_layers, config.moe->num_experts, params);
    }
  }
  group->pending_.assign(dp, nullptr);
  group->pending_out_.assign(dp, nullptr);
  group->in_step_.assign(dp, false);
  group->done_.assign(dp, false);
  group->failed_.assign(dp, std::string());
  return group;
}

RankGroup::~RankGroup() = default;

std::vector<Tensor> RankGroup::step(std::span<const std::vector<RunnerSeq>> batches) {
  MS_CHECK(static_cast<int>(batches.size()) == parallel_.data_parallel_size);
  std::lock_guard<std::mutex> lock(submit_mutex_);  // never overlaps an execute() step
  return run_step(batches);
}

std::vector<Tensor> RankGroup::run_step(std::span<const std::vector<RunnerSeq>> batches) {
  const int dp = parallel_.data_parallel_size;
  const int vocab = config().vocab_size;
  std::vector<Tensor> logits;
  for (int dp_rank = 0; dp_rank < dp; ++dp_rank) {
    logits.emplace_back(DType::kF32, Shape{logit_rows(batches[dp_rank]), vocab});
  }
  // TP rank 0 of each replica counts the routed tokens and returns the logits.
  std::vector<ExpertLoad> step_loads(dp, empty_step_load(config_, num_physical_));
  ranks_->step(batches, logits, step_loads);
  for (int dp_rank = 0; dp_rank < dp; ++dp_rank) {
    std::vector<int64_t>& total = expert_loads_[dp_rank].counts;
    for (size_t i = 0; i < total.size(); ++i) total[i] += step_loads[dp_rank].counts[i];
  }
  if (num_physical_ > 0) after_step(step_loads);
  return logits;
}

EpStats RankGroup::ep_stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return ep_stats_;
}

Tensor RankGroup::execute(int dp_rank, std::span<const RunnerSeq> seqs) {
  const int dp = parallel_.data_parallel_size;
  Tensor result;
  std::unique_lock<std::mutex> lock(submit_mutex_);
  submit_cv_.wait(lock, [&] { return pending_[dp_rank] == nullptr; });
  pending_[dp_rank] = &seqs;
  pending_out_[dp_rank] = &result;
  done_[dp_rank] = false;
  while (!done_[dp_rank]) {
    if (step_running_) {
      submit_cv_.wait(lock);
      continue;
    }
    // This thread runs the next step for every submission waiting now; the
    // others idle.
    step_running_ = true;
    std::vector<std::vector<RunnerSeq>> batches(dp);
    for (int d = 0; d < dp; ++d) {
      if (pending_[d] == nullptr || in_step_[d]) continue;
      in_step_[d] = true;
      batches[d].assign(pending_[d]->begin(), pending_[d]->end());
    }
    lock.unlock();
    std::vector<Tensor> logits;
    std::string error;
    try {
      logits = run_step(batches);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    for (int d = 0; d < dp; ++d) {
      if (!in_step_[d]) continue;
      if (error.empty()) *pending_out_[d] = std::move(logits[d]);
      failed_[d] = error;
      done_[d] = true;
      in_step_[d] = false;
      pending_[d] = nullptr;
      pending_out_[d] = nullptr;
    }
    step_running_ = false;
    submit_cv_.notify_all();
  }
  if (!failed_[dp_rank].empty()) throw std::runtime_error(failed_[dp_rank]);
  return result;
}

void RankGroup::reset_expert_load(int dp_rank) { expert_loads_[dp_rank] = empty_load(config()); }

std::string RankGroup::describe_layout() const {
  const int tp = parallel_.tensor_parallel_size, dp = parallel_.data_parallel_size;
  if (!parallel_.uses_expert_parallel()) {
    return fmt::format("TP {} × DP {} (experts tensor-split over TP)", tp, dp);
  }
  std::string text = fmt::format("EP {} = TP {} × DP {} ({}, {} placement)", parallel_.world_size(), tp, dp,
                                 all2all_backend_name(parallel_.all2all), expert_placement_name(parallel_.placement));
  if (!moe_layers_.empty() && !maps_.empty()) {
    const ExpertMap& map = *maps_[0];
    for (int rank = 0; rank < parallel_.world_size(); ++rank) {
      text += fmt::format(", experts {} on rank {}", map.describe_rank(rank), rank);
    }
    text += fmt::format(" (layer {})", moe_layers_[0]);
  }
  return text;
}

}  // namespace moeserve
