#include "runtime/cpu_runner.h"

#include "base/thread_pool.h"
#include "runtime/token_picker.h"

namespace moeserve {

namespace {

class CpuRunner final : public Runner {
 public:
  CpuRunner(LoadedModel model, const CpuRunnerOptions& options)
      : loaded_(std::move(model)),
        pool_(options.threads),
        exec_{&pool_},
        block_size_(options.block_size),
        runner_(*loaded_.model, exec_,
                KvShape{.num_layers = loaded_.model->config().num_layers,
                        .num_blocks = options.num_kv_blocks,
                        .block_size = options.block_size,
                        .entry_size = loaded_.model->kv_entry_size()}) {}

  const ModelConfig& config() const override { return loaded_.model->config(); }
  int num_kv_blocks() const override { return runner_.kv_memory().shape().num_blocks; }
  int block_size() const override { return block_size_; }
  size_t kv_memory_bytes() const override { return runner_.kv_memory().bytes(); }
  Tensor execute(std::span<const RunnerSeq> seqs) override {
    Tensor logits = runner_.execute(seqs);
    picker_.pick(&pool_, seqs, logits);
    return logits;
  }
  bool picks_tokens() const override { return true; }
  std::span<const int32_t> picked_tokens() const override { return picker_.tokens(); }
  int max_picked_logprobs() const override { return TokenPicker::kMaxLogprobs; }
  std::span<const TokenLogprob> picked_logprobs() const override { return picker_.logprobs(); }
  const ExpertLoad& expert_load() const override { return runner_.expert_load(); }
  void reset_expert_load() override { runner_.reset_expert_load(); }

 private:
  LoadedModel loaded_;
  ThreadPool pool_;
  ExecContext exec_;
  int block_size_;
  ModelRunner runner_;
  TokenPicker picker_;
};

}  // namespace

Result<std::unique_ptr<Runner>> make_cpu_runner(LoadedModel model, const CpuRunnerOptions& options) {
  if (!model.model) return make_error("make_cpu_runner: no model");
  if (options.block_size <= 0) return make_error("--block-size must be positive, got {}", options.block_size);
  if (options.num_kv_blocks <= 0) {
    return make_error("the KV cache budget holds no block of {} tokens: raise --kv-cache-memory", options.block_size);
  }
  return std::unique_ptr<Runner>(new CpuRunner(std::move(model), options));
}

}  // namespace moeserve
