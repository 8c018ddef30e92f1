// ModelRunner: the one runner of a model replica or rank, on every backend (the backend is its
// RunnerDevice, runtime/runner_device.h). It executes the engine's steps over the paged KV cache
// it sizes: cuts a step into forward passes of at most max_num_batched_tokens rows (a sequence's
// rows in later passes attend to the earlier ones' K/V in the cache, so the logits are the same),
// packs each pass's inputs (runtime/step_packing.h), has the device run it and pick every logits
// row's token, and keeps the routing counts. Before it sizes the KV cache from the device's free
// memory (--gpu-memory-utilization), it runs vLLM's profile run: one largest pass. As a rank of a
// parallel layout it runs with its groups (set_communicators), and under expert parallelism every
// rank runs as many passes as the busiest one, so the collective dispatch never waits forever.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/runner.h"
#include "runtime/runner_device.h"

namespace moeserve {

struct ModelRunnerOptions {
  // > 0: exactly this many KV blocks; 0: what gpu_memory_utilization leaves on the device after
  // the weights, the workspace and the profile run (devices with memory() only).
  int num_kv_blocks = 0;
  float gpu_memory_utilization = 0.9f;  // fraction of the device's memory the runner may hold
  int block_size = 16;                  // tokens per KV block
  int max_num_batched_tokens = 8192;    // rows per forward pass
  // Logit rows per forward pass at most (0: max_num_batched_tokens). A server passes
  // --max-num-seqs: it samples one row a sequence (prompt logprobs are refused), so the arena
  // need not hold the logits of every row of a long prefill step.
  int max_logit_rows = 0;
  // Decode graphs captured at start-up for batch sizes 1..this (a server passes --max-num-seqs),
  // where the device has graphs; other sizes are captured the first time they run.
  int capture_batch_sizes = 0;
  // No KV cache until allocate_kv_cache: the ranks of a layout size theirs together, after all of
  // them have loaded.
  bool defer_kv_cache = false;
};

// The profile run's step (ModelRunner::profile_run): `tokens` rows whose logits take
// `logit_rows` rows. With every row's logits, one sequence; with fewer (a server's cap), one
// sequence of tokens - (logit_rows - 1) rows and logit_rows - 1 of one row, each sampling its last
// row. Every token is 0, so every row routes to the same experts. The sequences' spans point into
// the struct's vectors: it moves (their buffers stay) but does not copy.
struct ProfileStep {
  ProfileStep() = default;
  ProfileStep(ProfileStep&&) = default;
  ProfileStep(const ProfileStep&) = delete;
  ProfileStep& operator=(const ProfileStep&) = delete;
  std::vector<int32_t> ids;                  // [tokens]
  std::vector<std::vector<BlockId>> tables;  // per sequence: its blocks of the scratch cache
  std::vector<RunnerSeq> seqs;
  int blocks = 0;  // of the scratch cache, in all
};
ProfileStep profile_step(int tokens, int logit_rows, int block_size);

class ModelRunner final : public Runner {
 public:
  static Result<std::unique_ptr<ModelRunner>> create(std::unique_ptr<RunnerDevice> device,
                                                     const ModelRunnerOptions& options);

  const ModelConfig& config() const override { return device_->config(); }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  int block_size() const override { return options_.block_size; }
  size_t kv_memory_bytes() const override { return device_->kv_bytes(); }
  // logits [rows, vocab] float32 on the host, as Runner::execute defines them; rows whose
  // sequence brought a TokenChoice are left unwritten.
  Tensor execute(std::span<const RunnerSeq> seqs) override;
  bool picks_tokens() const override { return true; }
  std::span<const int32_t> picked_tokens() const override { return picked_; }
  int max_picked_logprobs() const override { return device_->max_picked_logprobs(); }
  std::span<const TokenLogprob> picked_logprobs() const override { return picked_logprobs_; }
  // With expert parallelism, slot_counts too (per physical slot of this rank's layout).
  const ExpertLoad& expert_load() const override;
  void reset_expert_load() override;

  RunnerDevice& device() { return *device_; }
  const RunnerDevice& device() const { return *device_; }
  // The rank's groups for the following steps (they must outlive its steps).
  void set_communicators(const ParallelComm& comm) { comm_ = comm; }
  // KV cache bytes per block (every layer of this rank's part).
  size_t kv_bytes_per_block() const;
  // With defer_kv_cache: the KV cache, `blocks` blocks (once).
  Status allocate_kv_cache(int blocks);
  // Device memory that appeared outside the workspace during the profile run (lazily loaded
  // kernels, library workspaces); 0 without one.
  size_t profiled_outside_workspace() const { return profiled_outside_workspace_; }

 private:
  ModelRunner(std::unique_ptr<RunnerDevice> device, const ModelRunnerOptions& options);
  // vLLM's profile run, before the KV cache is sized: one pass of max_num_batched_tokens rows and
  // max_logit_rows logit rows (profile_step), one token repeated (every row routed to the same
  // experts, the most rows one expert can get), over a scratch cache of just its blocks. A workspace
  // sizing bug then fails at start-up rather than under load, and what the pass allocates outside
  // the workspace is already in use when the free memory is read.
  Status profile_run();
  Result<int> kv_blocks_from_memory() const;
  void run_pass(std::span<const PassPiece> pieces, const PassOutput& out);

  std::unique_ptr<RunnerDevice> device_;
  ModelRunnerOptions options_;
  int num_kv_blocks_ = 0;
  size_t profiled_outside_workspace_ = 0;
  ParallelComm comm_;
  mutable ExpertLoad expert_load_;
  std::vector<int32_t> picked_;                // of the last execute(), one per logits row
  std::vector<TokenLogprob> picked_logprobs_;  // likewise (set for choices that asked)
};

// KV blocks that `utilization` of a device's memory leaves after what is in use, at
// bytes_per_block each.
int kv_blocks_within(const DeviceMemory& memory, double utilization, size_t bytes_per_block);

// One rank of a layout as the KV sizing sees it, once every rank has loaded: the GPU it shares
// with the ranks of the same key ("host:device"), that GPU's memory then, and its bytes per block.
struct RankMemory {
  std::string gpu;
  DeviceMemory memory;
  size_t bytes_per_block = 0;
};

// The KV blocks every rank can allocate (the same count for all): per GPU, what `utilization`
// leaves over the bytes a block costs all its ranks together; the least of those. An error when
// that is none.
Result<int> kv_blocks_shared(std::span<const RankMemory> ranks, double utilization);

}  // namespace moeserve
