#include "runtime/rank_group.h"


#include <fmt/format.h>

namespace moeserve {

namespace {

ExpertLoad empty_load(const ModelConfig& config) {
  const int experts = config.moe ? config.moe->num_experts : 0;
  return ExpertLoad{std::vector<int64_t>(static_cast<size_t>(config.num_layers) * experts, 0), experts};
}

}  // namespace

Result<std::unique_ptr<RankGroup>> RankGroup::create(const ModelConfig& config, const WeightSource& weights,
                                                     const ParallelConfig& parallel, const ModelOptions& options,
                                                     int num_blocks, int block_size) {
  if (parallel.tensor_parallel_size < 1 || parallel.data_parallel_size < 1) {
    return make_error("--tensor-parallel-size and --data-parallel-size must be at least 1");
  }
  std::unique_ptr<RankGroup> group(new RankGroup());
  group->parallel_ = parallel;
  group->num_blocks_ = num_blocks;
  group->block_size_ = block_size;
  const int world = parallel.world_size();
  const int tp = parallel.tensor_parallel_size;
  for (int rank = 0; rank < world; ++rank) {
    ModelOptions rank_options = options;
    rank_options.shard = parallel.shard_for(rank);
    MS_ASSIGN_OR_RETURN(auto model, CpuModel::load(config, weights, rank_options));
    group->kv_.push_back(std::make_unique<KvMemory>(KvShape{.num_layers = config.num_layers,
                                                            .num_blocks = num_blocks,
                                                            .block_size = block_size,
                                                            .entry_size = model->kv_entry_size()}));
    group->models_.push_back(std::move(model));
    group->pools_.push_back(std::make_unique<ThreadPool>(std::max(1, parallel.threads_per_rank)));
    group->execs_.push_back(ExecContext{group->pools_.back().get()});
  }
  if (tp > 1) {
    for (int dp_rank = 0; dp_rank < parallel.data_parallel_size; ++dp_rank) {
      group->tp_groups_.push_back(std::make_unique<LocalGroup>(tp));
      for (int tp_rank = 0; tp_rank < tp; ++tp_rank) {
        group->tp_comms_.push_back(group->tp_groups_.back()->communicator(tp_rank));
      }
    }
  }
  if (parallel.uses_expert_parallel()) {
    group->ep_group_ = std::make_unique<LocalGroup>(world);
    for (int rank = 0; rank < world; ++rank) group->ep_comms_.push_back(group->ep_group_->communicator(rank));
  }
  const int dp = parallel.data_parallel_size;
  group->expert_loads_.assign(dp, empty_load(config));
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (config.layer_is_moe[layer]) group->moe_layers_.push_back(layer);
  }
  if (parallel.uses_expert_parallel() && !group->moe_layers_.empty()) {
    group->num_physical_ = config.moe->num_experts + parallel.num_redundant_experts;
    group->ep_stats_.rank_tokens_total.assign(world, 0);
    if (parallel.eplb.enabled) {
      const eplb::RebalanceParams params{.num_physical = group->num_physical_,
                                         .num_groups = config.moe->num_groups,
                                         .num_nodes = 1,  // one process: every rank shares one memory
                                         .num_ranks = world};
      group->eplb_ = std::make_unique<EplbState>(parallel.eplb, config.num_layers, config.moe->num_experts, params);
    }
  }
  group->pending_.assign(dp, nullptr);
  group->pending_out_.assign(dp, nullptr);
  group->in_step_.assign(dp, false);
  group->done_.assign(dp, false);
  for (int rank = 0; rank < world; ++rank) {
    group->workers_.emplace_back([raw = group.get(), rank] { raw->worker_loop(rank); });
  }
  return group;
}

RankGroup::~RankGroup() {
  {
    std::lock_guard<std::mutex> lock(work_mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void RankGroup::worker_loop(int rank) {
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

void RankGroup::run_on_all_ranks(const std::function<void(int rank)>& fn) {
  std::unique_lock<std::mutex> lock(work_mutex_);
  job_ = &fn;
  remaining_ = static_cast<int>(workers_.size());
  ++generation_;
  work_ready_.notify_all();
  work_done_.wait(lock, [&] { return remaining_ == 0; });
  job_ = nullptr;
}

std::vector<Tensor> RankGroup::step(std::span<const std::vector<RunnerSeq>> batches) {
  MS_CHECK(static_cast<int>(batches.size()) == parallel_.data_parallel_size);
  std::lock_guard<std::mutex> lock(submit_mutex_);  // never overlaps an execute() step
  return run_step(batches);
}

std::vector<Tensor> RankGroup::run_step(std::span<const std::vector<RunnerSeq>> batches) {
  const int dp = parallel_.data_parallel_size;
  const int tp = parallel_.tensor_parallel_size;
  const int vocab = config().vocab_size;
  std::vector<Tensor> logits;
  for (int dp_rank = 0; dp_rank < dp; ++dp_rank) {
    logits.emplace_back(DType::kF32, Shape{logit_rows(batches[dp_rank]), vocab});
  }
  // TP rank 0 of each replica counts the routed tokens and returns the logits;
  // the other TP ranks compute the same logits into scratch (the LM head is
  // replicated).
  std::vector<Tensor> scratch(parallel_.world_size());
  std::vector<ExpertLoad> step_loads(dp, empty_step_load());
  auto job = [&](int rank) {
    const int dp_rank = rank / tp, tp_rank = rank % tp;
    TensorView out = logits[dp_rank].view();
    if (tp_rank != 0) {
      scratch[rank] = Tensor(DType::kF32, logits[dp_rank].shape());
      out = scratch[rank].view();
    }
    const ParallelComm comm{.tp = tp_comms_.empty() ? nullptr : tp_comms_[rank].get(),
                            .ep = ep_comms_.empty() ? nullptr : ep_comms_[rank].get()};
    models_[rank]->forward(execs_[rank], batches[dp_rank], *kv_[rank], out,
                           tp_rank == 0 ? &step_loads[dp_rank] : nullptr, comm);
  };
  run_on_all_ranks(job);
  for (int dp_rank = 0; dp_rank < dp; ++dp_rank) {
    std::vector<int64_t>& total = expert_loads_[dp_rank].counts;
    for (size_t i = 0; i < total.size(); ++i) total[i] += step_loads[dp_rank].counts[i];
  }
  if (num_physical_ > 0) after_step(step_loads);
  return logits;
}

ExpertLoad RankGroup::empty_step_load() const {
  ExpertLoad load = empty_load(config());
  if (num_physical_ > 0) {
    load.num_slots = num_physical_;
    load.slot_counts.assign(static_cast<size_t>(config().num_layers) * num_physical_, 0);
  }
  return load;
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
    std::vector<Tensor> logits = run_step(batches);
    lock.lock();
    for (int d = 0; d < dp; ++d) {
      if (!in_step_[d]) continue;
      *pending_out_[d] = std::move(logits[d]);
      done_[d] = true;
      in_step_[d] = false;
      pending_[d] = nullptr;
      pending_out_[d] = nullptr;
    }
    step_running_ = false;
    submit_cv_.notify_all();
  }
  return result;
}

size_t RankGroup::kv_memory_bytes(int dp_rank) const {
  size_t bytes = 0;
  const int tp = parallel_.tensor_parallel_size;
  for (int rank = dp_rank * tp; rank < (dp_rank + 1) * tp; ++rank) bytes += kv_[rank]->bytes();
  return bytes;
}

void RankGroup::reset_expert_load(int dp_rank) { expert_loads_[dp_rank] = empty_load(config()); }

std::string RankGroup::describe_layout() const {
  const int tp = parallel_.tensor_parallel_size, dp = parallel_.data_parallel_size;
  if (!parallel_.uses_expert_parallel()) {
    return fmt::format("TP {} × DP {} (experts tensor-split over TP)", tp, dp);
  }
  std::string text = fmt::format("EP {} = TP {} × DP {} ({}, {} placement)", parallel_.world_size(), tp, dp,
                                 all2all_backend_name(parallel_.all2all), expert_placement_name(parallel_.placement));
  for (int layer : moe_layers_) {
    const ExpertMap& map = models_[0]->expert_map(layer);
    for (int rank = 0; rank < parallel_.world_size(); ++rank) {
      text += fmt::format(", experts {} on rank {}", map.describe_rank(rank), rank);
    }
    text += fmt::format(" (layer {})", layer);
    break;
  }
  return text;
}

}  // namespace moeserve
