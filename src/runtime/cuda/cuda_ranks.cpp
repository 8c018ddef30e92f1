#include "runtime/cuda/cuda_ranks.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "device/cuda/cuda_device.h"
#include "runtime/cuda/staged_communicator.h"

namespace moeserve {

namespace {

class CudaRankShard final : public RankWorker {
 public:
  CudaRankShard(int tp_rank, int device, std::unique_ptr<CudaRunner> runner)
      : tp_rank_(tp_rank), device_(device), runner_(std::move(runner)) {}

  bool is_tp_leader() const override { return tp_rank_ == 0; }
  size_t kv_bytes() const override { return runner_->kv_bytes(); }
  CudaRunner& runner() { return *runner_; }
  int device() const { return device_; }

  // TP collectives run on the step's device buffers (staged); the EP dispatch stages its rows
  // through the host itself (DecoderLoop::moe_expert_parallel), so its group stays a host one.
  void set_communicators(std::unique_ptr<Communicator> tp, std::unique_ptr<Communicator> ep) override {
    if (tp != nullptr) tp_ = std::make_unique<cuda::StagedCommunicator>(std::move(tp), runner_->stream());
    ep_ = std::move(ep);
    runner_->set_communicators(ParallelComm{.tp = tp_.get(), .ep = ep_.get()});
  }

  void bind_thread() override {
    const Status status = cuda::use_device(device_);
    MS_CHECK_MSG(status.ok(), status.ok() ? "" : status.error().message.c_str());
  }

  void forward(std::span<const RunnerSeq> batch, const TensorView& out, ExpertLoad* load) override {
    // Every row comes back: the replica runner picks the tokens on the host.
    std::vector<RunnerSeq> seqs(batch.begin(), batch.end());
    for (RunnerSeq& seq : seqs) seq.choice = nullptr;
    const Tensor logits = runner_->execute(seqs);
    MS_CHECK(logits.view().nbytes() == out.nbytes());
    if (out.nbytes() > 0) std::memcpy(out.data, logits.view().data, out.nbytes());
    if (load == nullptr) return;
    const ExpertLoad& counted = runner_->expert_load();
    for (size_t i = 0; i < counted.counts.size(); ++i) load->counts[i] += counted.counts[i];
    MS_CHECK(load->slot_counts.empty() || load->slot_counts.size() == counted.slot_counts.size());
    for (size_t i = 0; i < load->slot_counts.size(); ++i) load->slot_counts[i] += counted.slot_counts[i];
    runner_->reset_expert_load();
  }

  void apply_placement(std::span<const int> moe_layers,
                       const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) override {
    apply_expert_placement(*ep_, ep_->rank(), moe_layers, new_maps, runner_->model());
  }

 private:
  int tp_rank_;
  int device_;
  std::unique_ptr<CudaRunner> runner_;
  std::unique_ptr<Communicator> tp_, ep_;
};

// KV blocks per replica that every GPU can give each of its ranks: what gpu_memory_utilization
// leaves on a GPU after its ranks loaded, over the bytes a block costs all of them together.
Result<int> kv_blocks_from_memory(const std::vector<CudaRankShard*>& ranks, double utilization) {
  int blocks = std::numeric_limits<int>::max();
  int max_device = 0;
  for (const CudaRankShard* rank : ranks) max_device = std::max(max_device, rank->device());
  for (int device = 0; device <= max_device; ++device) {
    size_t per_block = 0;
    for (CudaRankShard* rank : ranks) {
      if (rank->device() == device) per_block += rank->runner().kv_bytes_per_block();
    }
    if (per_block == 0) continue;
    MS_RETURN_IF_ERROR(cuda::use_device(device));
    const cuda::MemoryInfo memory = cuda::memory_info();
    const double allowed = memory.total_bytes * utilization;
    const double in_use = static_cast<double>(memory.total_bytes - memory.free_bytes);
    blocks = std::min(blocks, static_cast<int>(std::max(0.0, (allowed - in_use) / double(per_block))));
  }
  if (blocks <= 0) {
    return make_error("no GPU memory is left for the KV cache at --gpu-memory-utilization {} once every rank has "
                      "loaded: raise it, lower --max-num-batched-tokens or use fewer ranks per GPU",
                      utilization);
  }
  return blocks;
}

}  // namespace

Result<CudaRanks> make_cuda_ranks(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                  const ParallelConfig& parallel, const CudaRunnerOptions& options) {
  MS_ASSIGN_OR_RETURN(const std::vector<cuda::DeviceInfo> gpus, cuda::list_devices());
  if (gpus.empty()) return make_error("--device cuda: no CUDA device is visible");
  const int tp = parallel.tensor_parallel_size;
  std::vector<std::unique_ptr<RankWorker>> workers;
  std::vector<CudaRankShard*> ranks;
  for (int rank = 0; rank < parallel.world_size(); ++rank) {
    CudaRunnerOptions rank_options = options;
    rank_options.device_index = rank % static_cast<int>(gpus.size());
    rank_options.shard = parallel.shard_for(rank);
    rank_options.defer_kv_cache = true;
    rank_options.enforce_eager = true;  // the staged collectives wait on the host
    rank_options.capture_batch_sizes = 0;
    MS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunner> runner, CudaRunner::create(config, weights, seed, rank_options));
    auto shard = std::make_unique<CudaRankShard>(rank % tp, rank_options.device_index, std::move(runner));
    ranks.push_back(shard.get());
    workers.push_back(std::move(shard));
  }
  CudaRanks built;
  built.num_kv_blocks = options.num_kv_blocks;
  if (built.num_kv_blocks <= 0) {
    MS_ASSIGN_OR_RETURN(built.num_kv_blocks, kv_blocks_from_memory(ranks, options.gpu_memory_utilization));
  }
  for (CudaRankShard* rank : ranks) {
    MS_RETURN_IF_ERROR(cuda::use_device(rank->device()));
    MS_RETURN_IF_ERROR(rank->runner().allocate_kv_cache(built.num_kv_blocks));
  }
  const CudaRunner& first = ranks.front()->runner();
  built.summary = fmt::format(
      "{} ranks on {} GPU{} (rank r on GPU r mod {}), rank 0: {:.2f} GiB of bf16 weights, {} activations, KV cache {} "
      "blocks x {} tokens (float32); collectives staged through the host, steps run eagerly",
      parallel.world_size(), std::min<int>(gpus.size(), parallel.world_size()), gpus.size() > 1 ? "s" : "", gpus.size(),
      first.weight_bytes() / double(1 << 30), cuda::prefill_precision_name(first.prefill_precision()),
      built.num_kv_blocks, first.block_size());
  built.executor = make_thread_ranks(parallel, std::move(workers));
  return built;
}

}  // namespace moeserve
