#include "runtime/parallel_runner.h"

#include "runtime/process_ranks.h"
#include "runtime/token_picker.h"

namespace moeserve {

namespace {

// Keeps the weights alive as long as the group that views them.
struct SharedGroup {
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<RankGroup> group;
};

class ReplicaRunner final : public Runner {
 public:
  ReplicaRunner(std::shared_ptr<SharedGroup> shared, int dp_rank) : shared_(std::move(shared)), dp_rank_(dp_rank) {}

  const ModelConfig& config() const override { return group().config(); }
  int num_kv_blocks() const override { return group().num_kv_blocks(); }
  int block_size() const override { return group().block_size(); }
  size_t kv_memory_bytes() const override { return group().kv_memory_bytes(dp_rank_); }
  // Tokens are picked on the engine's thread (serially: the ranks' pools belong to the group).
  Tensor execute(std::span<const RunnerSeq> seqs) override {
    Tensor logits = shared_->group->execute(dp_rank_, seqs);
    picker_.pick(nullptr, seqs, logits);
    return logits;
  }
  bool picks_tokens() const override { return true; }
  std::span<const int32_t> picked_tokens() const override { return picker_.tokens(); }
  int max_picked_logprobs() const override { return TokenPicker::kMaxLogprobs; }
  std::span<const TokenLogprob> picked_logprobs() const override { return picker_.logprobs(); }
  const ExpertLoad& expert_load() const override { return group().expert_load(dp_rank_); }
  void reset_expert_load() override { shared_->group->reset_expert_load(dp_rank_); }

 private:
  const RankGroup& group() const { return *shared_->group; }
  std::shared_ptr<SharedGroup> shared_;
  int dp_rank_;
  TokenPicker picker_;
};

}  // namespace

Result<ParallelRunners> make_parallel_runners(const std::string& model_dir, const ModelConfig& config,
                                              const LoadOptions& load, const ParallelRunnerOptions& options) {
  if (options.block_size <= 0) return make_error("--block-size must be positive, got {}", options.block_size);
  if (options.num_kv_blocks <= 0 && !options.cuda) {
    return make_error("the KV cache budget holds no block of {} tokens: raise --kv-cache-memory", options.block_size);
  }
  auto shared = std::make_shared<SharedGroup>();
  ParallelRunners runners;
  const ParallelConfig& parallel = options.parallel;
  std::optional<cuda_backend::RunnerOptions> cuda = options.cuda;
  if (cuda) {
    cuda->num_kv_blocks = options.num_kv_blocks;
    cuda->block_size = options.block_size;
  }
  if (parallel.executor == DistributedExecutor::kMp) {
    MS_ASSIGN_OR_RETURN(BuiltProcessRanks ranks,
                        make_process_ranks(model_dir, load, parallel, options.num_kv_blocks, options.block_size, cuda));
    if (cuda) {
      runners.summary = fmt::format(
          "{} ranks as worker processes, rank r on GPU r mod its host's GPUs, KV cache {} blocks x {} tokens "
          "({}); TP and EP collectives over NCCL (staged through the host in a build without it), "
          "steps run eagerly",
          parallel.world_size(), ranks.num_kv_blocks, options.block_size, load.kv_cache_fp8 ? "fp8 e4m3" : "float32");
    }
    MS_ASSIGN_OR_RETURN(shared->group, RankGroup::create(config, parallel, std::move(ranks.executor),
                                                         ranks.num_kv_blocks, options.block_size));
  } else if (cuda) {
    MS_ASSIGN_OR_RETURN(cuda_backend::BuiltRanks ranks,
                        cuda_backend::make_ranks(model_dir, config, load, *cuda, parallel));
    runners.summary = std::move(ranks.summary);
    MS_ASSIGN_OR_RETURN(shared->group, RankGroup::create(config, parallel, std::move(ranks.executor),
                                                         ranks.num_kv_blocks, options.block_size));
  } else {
    MS_ASSIGN_OR_RETURN(shared->weights, open_weights(model_dir, load));
    MS_ASSIGN_OR_RETURN(shared->group, RankGroup::create(config, *shared->weights, options.parallel, options.model,
                                                         options.num_kv_blocks, options.block_size));
  }
  for (int dp_rank = 0; dp_rank < options.parallel.data_parallel_size; ++dp_rank) {
    runners.replicas.push_back(std::make_unique<ReplicaRunner>(shared, dp_rank));
  }
  // Aliasing constructor: the group pointer keeps the whole shared state alive.
  runners.group = std::shared_ptr<RankGroup>(shared, shared->group.get());
  return runners;
}

}  // namespace moeserve
