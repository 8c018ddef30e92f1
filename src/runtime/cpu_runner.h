// The CPU as a RunnerDevice of the one runner (runtime/model_runner.h): its model (CpuModel,
// weights in host memory), paged KvMemory of the block count the caller gives — float32 entries,
// or e4m3 bytes under --kv-cache-dtype fp8 (how many blocks a byte budget buys is the memory
// model's figure, plan::MemoryModel::cpu_kv_blocks, so `moeserve plan` and the engine agree
// exactly) — the step workspace (grown to the largest pass so far), and the tokens picked on the
// host (TokenPicker), rows in parallel on the thread pool.
#pragma once

#include <memory>

#include "base/result.h"
#include "base/thread_pool.h"
#include "kernels/context.h"
#include "kvcache/kv_memory.h"
#include "runtime/cpu_model.h"
#include "runtime/loaded_model.h"
#include "runtime/model_runner.h"
#include "runtime/token_picker.h"

namespace moeserve {

class CpuDevice final : public RunnerDevice {
 public:
  // Owning its model and thread pool (`pool` may be null: exec's is borrowed).
  CpuDevice(std::unique_ptr<CpuModel> model, ExecContext exec, std::unique_ptr<ThreadPool> pool);
  // Over a borrowed model, read-only (expert_slots() is not for it), and exec's pool.
  CpuDevice(const CpuModel& model, ExecContext exec);

  const ModelConfig& config() const override { return model_.config(); }
  const ShardSpec& shard() const override { return model_.shard(); }
  int kv_entry_size() const override { return model_.kv_entry_size(); }
  int kv_element_bytes() const override { return model_.kv_cache_fp8() ? 1 : int(sizeof(float)); }
  size_t weight_bytes() const override { return model_.weight_bytes(); }
  ExpertSlots& expert_slots() override;
  int query_tile_rows() const override { return 1; }  // the CPU's attention takes no tiles
  int max_picked_logprobs() const override { return TokenPicker::kMaxLogprobs; }
  Status allocate_kv_cache(int blocks, int block_size) override;
  size_t kv_bytes() const override { return kv_ == nullptr ? 0 : kv_->bytes(); }
  size_t workspace_capacity() const override { return workspace_bytes_; }
  size_t workspace_peak() const override { return workspace_bytes_; }
  void run_pass(const PackedStep& step, std::span<const PassPiece> pieces, const LoadCounters& load,
                const ParallelComm& comm, const PassOutput& out) override;
  void idle_pass(const LoadCounters& load, const ParallelComm& comm) override;

 private:
  // The backend whose arena holds a pass of `tokens` rows.
  CpuStepBackend& backend(int tokens);

  std::unique_ptr<CpuModel> owned_;
  std::unique_ptr<ThreadPool> pool_;
  const CpuModel& model_;
  ExecContext exec_;
  std::unique_ptr<KvMemory> kv_;
  KvLayers kv_layers_;
  std::unique_ptr<CpuStepBackend> backend_;
  int backend_tokens_ = 0;
  size_t workspace_bytes_ = 0;
  TokenPicker picker_;
  std::vector<const TokenChoice*> row_choices_;  // per logits row of the pass
};

struct CpuRunnerOptions {
  int num_kv_blocks = 0;  // > 0
  int block_size = 16;    // tokens per KV block, > 0
  int threads = 0;        // worker threads, 0 = all cores
};

// A ModelRunner on the CPU owning `model`. A step runs as one pass (the scheduler bounds it).
Result<std::unique_ptr<Runner>> make_cpu_runner(LoadedModel model, const CpuRunnerOptions& options);

// The runner options of a CPU runner with `num_kv_blocks` blocks: one pass per step.
ModelRunnerOptions cpu_runner_options(int num_kv_blocks, int block_size);

}  // namespace moeserve
