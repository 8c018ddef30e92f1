// CudaRunner: the CUDA backend behind the runner seam — one GPU, one model replica. It owns the
// CudaModel (weights in device memory), the paged KV cache (float32, sized from
// --gpu-memory-utilization after the weights and the step workspace are allocated and one largest
// step has run, as vLLM profiles), the step workspace arena and one stream. execute() packs a
// step's token ids, positions, cache slots and block tables into one pinned buffer, uploads it with
// one copy, runs the model, and copies the logits rows back. Steps larger than
// max_num_batched_tokens are split into consecutive sub-steps (each sub-step's K/V is in the cache
// before the next one attends to it, so the logits are the same). Decode steps replay a CUDA graph
// per batch size (captured at start-up up to capture_batch_sizes, else on the first step of that
// size) unless enforce_eager is set: the step's inputs then live at fixed device addresses (the
// metadata layout below depends only on the batch size, the arena hands out the same workspace), so
// only the upload and the logits copy surround one graph launch. Tokens are picked on the device:
// the argmax of every row, and sample_rows (runtime/sampler.h's pipeline) for rows whose sequence
// brought a TokenChoice.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "device/cuda/cuda_graph.h"
#include "device/cuda/device_memory.h"
#include "runtime/runner_seq.h"
#include "runtime/cuda/cuda_model.h"
#include "runtime/loaded_model.h"
#include "runtime/model_runner.h"
#include "runtime/runner.h"

namespace moeserve {

// Decode steps of up to this many sequences replay CUDA graphs (larger ones run eagerly).
constexpr int kMaxGraphTokens = 256;
// Rows sampled on the device per sample_rows call (its workspace is 16 bytes × rows × vocab).
constexpr int kMaxSampleRows = 64;

struct CudaRunnerOptions {
  int device_index = 0;
  int num_kv_blocks = 0;                // > 0: exactly this many; 0: from gpu_memory_utilization
  float gpu_memory_utilization = 0.9f;  // fraction of the GPU's memory this runner may hold
  int block_size = 16;
  int max_num_batched_tokens = 8192;  // rows per forward pass
  // The CLI sets it from --dtype (make_cuda_runner: bf16 for bf16 checkpoints by default, as vLLM).
  // kSplitBf16 lands at ~1e-5 of transformers' float32 on every fixture; plain bf16 flips
  // tiny-deepseek_v3's near-tied routing decisions (0.38 relative error on some rows; see
  // cuda_golden_test) at twice the prefill speed.
  cuda::PrefillPrecision prefill_precision = cuda::PrefillPrecision::kSplitBf16;
  // false: decode steps (one sampled row per sequence, up to kMaxGraphTokens of them) replay a
  // CUDA graph per batch size (vLLM's --enforce-eager turns it off).
  bool enforce_eager = false;
  // With graphs: capture those of batch sizes 1..capture_batch_sizes (at most kMaxGraphTokens)
  // at start-up, as vLLM does (a server passes --max-num-seqs), so no step pays for a capture;
  // other sizes are captured the first time they run.
  int capture_batch_sizes = 0;
  // One rank of a parallel layout (runtime/cuda/cuda_ranks.h): its part of the model (with expert
  // parallelism, its expert_load() counts its slots too), and no KV cache until allocate_kv_cache
  // (the ranks size it together, after all of them have loaded).
  ShardSpec shard;
  bool defer_kv_cache = false;
};

class CudaRunner final : public Runner {
 public:
  // weights null: random weights generated on the device (--load-format dummy).
  static Result<std::unique_ptr<CudaRunner>> create(const ModelConfig& config, const WeightSource* weights,
                                                    uint64_t seed, const CudaRunnerOptions& options);
  ~CudaRunner() override;

  const ModelConfig& config() const override { return model_->config(); }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  int block_size() const override { return options_.block_size; }
  cuda::PrefillPrecision prefill_precision() const { return options_.prefill_precision; }
  size_t kv_memory_bytes() const override { return kv_buffer_.bytes(); }
  // logits [rows, vocab] float32 on the host, rows as ModelRunner::execute defines them.
  Tensor execute(std::span<const RunnerSeq> seqs) override;
  // Every logits row's token is picked on the device (the argmax, or sample_rows for a row with a
  // TokenChoice); rows with a TokenChoice are not copied back.
  bool picks_tokens() const override { return true; }
  std::span<const int32_t> picked_tokens() const override { return picked_; }
  int max_picked_logprobs() const override { return cuda::kMaxSampleLogprobs; }
  std::span<const TokenLogprob> picked_logprobs() const override { return picked_logprobs_; }
  const ExpertLoad& expert_load() const override;
  void reset_expert_load() override;

  size_t weight_bytes() const { return model_->weight_bytes(); }
  size_t kv_bytes() const { return kv_buffer_.bytes(); }
  size_t workspace_bytes() const { return arena_.capacity(); }
  // The arena's peak so far (the start-up profile run's, unless a later step went higher) and
  // the device memory that appeared outside the arena during that run (lazily loaded kernels,
  // library workspaces).
  size_t profiled_workspace_peak() const { return arena_.peak(); }
  size_t profiled_outside_arena() const { return profiled_outside_arena_; }
  // Batch sizes with a captured decode graph so far.
  size_t num_graphs() const {
    return std::count_if(graphs_.begin(), graphs_.end(), [](const auto& entry) { return entry.second.has_value(); });
  }
  // Waits for all queued work (benchmarks time whole steps with it).
  void synchronize() const { stream_.synchronize(); }
  // The cudaStream_t every step is queued on.
  void* stream() const { return stream_.stream(); }
  cuda::CudaModel& model() { return *model_; }
  // Attaches a per-op device-time profile to the following steps (null detaches).
  void set_profile(cuda::OpProfile* profile) { profile_ = profile; }
  // The rank's groups for the following steps (they must outlive the runner's steps). Their
  // collectives wait on the host, so such steps run eagerly (no CUDA graph).
  void set_communicators(const ParallelComm& comm) { comm_ = comm; }
  // KV cache bytes per block of block_size tokens (every layer of this rank's part).
  size_t kv_bytes_per_block() const;
  // With defer_kv_cache: the KV cache, `blocks` blocks of block_size tokens (once).
  Status allocate_kv_cache(int blocks);

 private:
  struct Piece {  // one sequence's tokens inside one forward pass
    const RunnerSeq* seq;
    int begin;  // first new token, absolute position
    int count;
    bool logits_all;
    bool logits_last;
    const TokenChoice* choice;  // its logits row stays on the device, its token is picked there
    int logit_rows() const { return logits_all ? count : (logits_last ? 1 : 0); }
  };
  CudaRunner(cuda::CudaStream stream, const CudaRunnerOptions& options)
      : stream_(std::move(stream)), options_(options) {}
  Status allocate(uint64_t seed);
  // vLLM's profile run, before the KV cache is sized: one forward pass of the largest step
  // (max_num_batched_tokens rows of one sequence, every row's logits, all rows routed to the
  // same experts) over a scratch cache of just its blocks. A workspace sizing bug then fails at
  // start-up rather than under load, and what the pass allocates outside the arena is already
  // in use when the free memory is read.
  Status profile_run(size_t bytes_per_block);
  // kv_ over `blocks` blocks of `buffer` (0: none).
  void set_kv(const cuda::DeviceBuffer& buffer, int blocks);
  // Packs the pieces' ids, positions, slots, logit rows, query tiles and block tables into
  // meta_ (one upload, after the previous step consumed meta_host_); the step's inputs there.
  StepInputs upload_inputs(std::span<const Piece> pieces);
  // meta_ and meta_host_ hold at least `words` int32, else grow to `capacity` words; growing
  // drops the captured graphs, which read the old buffer.
  Status reserve_meta(size_t words, size_t capacity);
  void run_pieces(std::span<const Piece> pieces, float* host_logits);
  // Queues sample_rows for the pieces whose choice is not a plain argmax; their tokens replace
  // the argmax in picked_device_, and the logprobs asked for are queued into logprobs_host_.
  // Returns (index in logprobs_host_, logits row) of each choice with logprobs.
  std::vector<std::pair<int, int>> sample_on_device(std::span<const Piece> pieces, const float* device_logits);
  // The step's inputs inside meta_ for a layout of (tokens, logit rows, query tiles): the
  // offsets depend only on these counts (the block tables come last).
  StepInputs inputs_at(int tokens, int logit_rows, int tiles) const;
  // The graph of a decode step of `tokens` sequences, captured now if it is the first step of
  // that size; null where that size runs eagerly. device_logits: the arena's first allocation.
  const cuda::CudaGraph* decode_graph(int tokens, float* device_logits);
  Status capture_decode_graphs(int max_batch);
  // Records one decode step's forward pass (the inputs already at their fixed addresses).
  Result<cuda::CudaGraph> capture(const StepInputs& inputs, float* device_logits);

  cuda::CudaStream stream_;
  CudaRunnerOptions options_;
  std::unique_ptr<cuda::CudaModel> model_;
  cuda::DeviceArena arena_;
  cuda::DeviceBuffer kv_buffer_;
  KvLayers kv_;
  int num_kv_blocks_ = 0;
  size_t profiled_outside_arena_ = 0;
  cuda::DeviceBuffer meta_;  // the step's packed int32 inputs
  cuda::PinnedBuffer meta_host_;
  std::vector<StepPiece> step_pieces_;  // the last upload's pieces (StepInputs::pieces)
  // Captured decode steps by batch size (rows); an empty graph marks a size that cannot be captured.
  std::map<int, std::optional<cuda::CudaGraph>> graphs_;
  // The step's routing counters: expert_counts_ on the device, and with expert parallelism the
  // host's slot_counts_ [layers × physical slots].
  LoadCounters load_counters();
  cuda::DeviceBuffer expert_counts_;  // [layers × E] int64
  std::vector<int64_t> slot_counts_;
  cuda::DeviceBuffer picked_device_;  // [logit rows] int32 of the last forward pass
  cuda::PinnedBuffer picked_host_;
  std::vector<int32_t> picked_;  // of the last execute(), one per logits row
  std::vector<TokenLogprob> picked_logprobs_;  // likewise (set for choices that asked)
  // sample_rows: its workspace for kMaxSampleRows rows, and the choices + edits uploaded per step.
  cuda::DeviceBuffer sample_workspace_;
  cuda::DeviceBuffer choices_device_;
  cuda::PinnedBuffer choices_host_;
  cuda::DeviceBuffer logprobs_device_;  // [choices with logprobs] SampleLogprobs
  cuda::PinnedBuffer logprobs_host_;
  mutable ExpertLoad expert_load_;
  cuda::OpProfile* profile_ = nullptr;
  ParallelComm comm_;
};

// A TokenChoice as sample_rows takes it: logits row `row`, its edits at edits[edit_begin, + size).
cuda::SampleChoice device_choice(const TokenChoice& choice, int row, int edit_begin);

// runner_options with what the load options decide: the activation precision from --dtype (as
// make_cuda_runner below); an error for the flags the CUDA backend refuses (--quantization fp8,
// --kv-cache-dtype fp8).
Result<CudaRunnerOptions> cuda_runner_options(const ModelConfig& config, const LoadOptions& load,
                                              const CudaRunnerOptions& runner_options);

// The CLI's entry (through runtime/make_runner): `config` (config.json with load.hf_overrides,
// parsed once by the caller) and the checkpoint (or dummy weights) of model_dir; the activation
// precision follows --dtype (load.dtype): bfloat16, or auto on a bf16 checkpoint, selects
// PrefillPrecision::kBf16 (vLLM's numerics); float32, or auto on a float32 checkpoint, the
// float32-like kSplitBf16.
Result<std::unique_ptr<CudaRunner>> make_cuda_runner(const std::string& model_dir, const ModelConfig& config,
                                                     const LoadOptions& load, const CudaRunnerOptions& options);

}  // namespace moeserve
