// CudaRunnerDevice: one GPU as the one runner's RunnerDevice (runtime/runner_device.h). It owns
// the CudaModel (weights in device memory), the paged KV cache (float32; the runner sizes it from
// --gpu-memory-utilization after its profile run), the step workspace arena and one stream. A
// pass copies its packed inputs into one pinned buffer and uploads them with one copy, runs the
// model, picks the tokens on the device (the argmax of every row, and sample_rows — the host
// sampler's pipeline — for rows whose sequence brought a TokenChoice) and copies back the logits
// rows of sequences without one. Decode passes replay a CUDA graph per batch size (captured at
// start-up up to the runner's capture_batch_sizes, else on the first pass of that size) unless
// enforce_eager is set: the pass's inputs then live at fixed device addresses (pack_step's layout
// depends only on the batch size, the arena hands out the same workspace), so only the upload and
// the copies back surround one graph launch.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "backend/cuda/cuda_model.h"
#include "base/result.h"
#include "device/cuda/cuda_graph.h"
#include "device/cuda/device_memory.h"
#include "runtime/loaded_model.h"
#include "runtime/model_runner.h"

namespace moeserve {

// Decode passes of up to this many sequences replay CUDA graphs (larger ones run eagerly).
constexpr int kMaxGraphTokens = 256;
// Rows sampled on the device per sample_rows call (its workspace is 16 bytes × rows × vocab).
constexpr int kMaxSampleRows = 64;

struct CudaDeviceOptions {
  int device_index = 0;
  // The CLI sets it from --dtype (cuda_runner_options: bf16 for bf16 checkpoints by default, as
  // vLLM). kSplitBf16 lands at ~1e-5 of transformers' float32 on every fixture; plain bf16 flips
  // tiny-deepseek_v3's near-tied routing decisions (0.38 relative error on some rows; see
  // cuda_golden_test) at twice the prefill speed.
  cuda::PrefillPrecision prefill_precision = cuda::PrefillPrecision::kSplitBf16;
  // false: decode passes (one sampled row per sequence, up to kMaxGraphTokens of them) replay a
  // CUDA graph per batch size (vLLM's --enforce-eager turns it off).
  bool enforce_eager = false;
  // One rank of a parallel layout (backend/cuda/cuda_ranks.h): its part of the model.
  ShardSpec shard;
  // --quantization fp8 (and random weights of an fp8 config): bf16 weights quantized to
  // block-scaled FP8 as they load. An fp8 checkpoint's weights stay FP8 without it.
  bool quantize_fp8 = false;
  // --kv-cache-dtype fp8: the KV cache holds e4m3 bytes (ops::KvScales), a quarter of float32's.
  bool kv_cache_fp8 = false;
  // Its TP and EP collectives over NCCL (comm/nccl) instead of staged through the host: a rank alone in
  // its process (a worker process), since ranks sharing a GPU take NCCL host ids of their own.
  bool nccl = false;
};

class CudaRunnerDevice final : public RunnerDevice {
 public:
  // weights null: random weights generated on the device (--load-format dummy).
  static Result<std::unique_ptr<CudaRunnerDevice>> create(const ModelConfig& config, const WeightSource* weights,
                                                          uint64_t seed, const CudaDeviceOptions& options);
  ~CudaRunnerDevice() override;

  const ModelConfig& config() const override { return model_->config(); }
  const ShardSpec& shard() const override { return options_.shard; }
  int kv_entry_size() const override { return model_->kv_entry_size(); }
  int kv_element_bytes() const override { return options_.kv_cache_fp8 ? 1 : int(sizeof(float)); }
  const char* kv_element_name() const { return options_.kv_cache_fp8 ? "fp8 e4m3" : "float32"; }
  size_t weight_bytes() const override { return model_->weight_bytes(); }
  ExpertSlots& expert_slots() override { return *model_; }
  int query_tile_rows() const override;
  int max_picked_logprobs() const override { return cuda::kMaxSampleLogprobs; }
  Status allocate_kv_cache(int blocks, int block_size) override;
  size_t kv_bytes() const override { return kv_buffer_.bytes(); }
  std::optional<DeviceMemory> memory() const override;
  Status reserve_workspace(int max_tokens, int max_logit_rows) override;
  size_t workspace_capacity() const override { return arena_.capacity(); }
  size_t workspace_peak() const override { return arena_.peak(); }
  LoadCounters load_counters(ExpertLoad& host) override;
  void read_expert_load(ExpertLoad& host) override;
  void reset_expert_load() override;
  void run_pass(const PackedStep& step, std::span<const PassPiece> pieces, const LoadCounters& load,
                const ParallelComm& comm, const PassOutput& out) override;
  void idle_pass(const LoadCounters& load, const ParallelComm& comm) override;
  void synchronize() override { stream_.synchronize(); }
  Status capture_decode_graphs(int max_batch, size_t words) override;
  void bind_thread() override;
  // TP and EP collectives run on the pass's device buffers: over NCCL (options.nccl; a group of
  // more than one), else staged through the host.
  std::unique_ptr<Communicator> device_communicator(std::unique_ptr<Communicator> group) override;

  int device_index() const override { return options_.device_index; }
  cuda::PrefillPrecision prefill_precision() const { return options_.prefill_precision; }
  // Batch sizes with a captured decode graph so far.
  size_t num_graphs() const {
    return std::count_if(graphs_.begin(), graphs_.end(), [](const auto& entry) { return entry.second.has_value(); });
  }
  // The cudaStream_t every pass is queued on.
  void* stream() const { return stream_.stream(); }
  cuda::CudaModel& model() { return *model_; }
  // Attaches a per-op device-time profile to the following passes (null detaches).
  void set_profile(cuda::OpProfile* profile) { profile_ = profile; }
  // "12.34 GiB of bf16 weights, split-bf16 activations", for start-up logs.
  std::string describe() const;

 private:
  CudaRunnerDevice(cuda::CudaStream stream, const CudaDeviceOptions& options)
      : stream_(std::move(stream)), options_(options) {}
  Status allocate(const ModelConfig& config);
  // Copies the packed words into meta_ (one upload, after the previous pass consumed
  // meta_host_); the pass's inputs there.
  StepInputs upload_inputs(const PackedStep& step);
  // meta_ and meta_host_ hold at least `words` int32, else grow to `capacity` words; growing
  // drops the captured graphs, which read the old buffer.
  Status reserve_meta(size_t words, size_t capacity);
  // Queues sample_rows for the pieces whose choice is not a plain argmax; their tokens replace
  // the argmax in picked_device_, and the logprobs asked for are queued into logprobs_host_.
  // Returns (index in logprobs_host_, logits row) of each choice with logprobs.
  std::vector<std::pair<int, int>> sample_on_device(std::span<const PassPiece> pieces, const float* device_logits);
  // The pass's inputs inside meta_ for a layout of (tokens, logit rows, query tiles).
  StepInputs inputs_at(int tokens, int logit_rows, int tiles) const;
  // The graph of a decode pass of `tokens` sequences, captured now if it is the first pass of
  // that size; null where that size runs eagerly. device_logits: the arena's first allocation.
  const cuda::CudaGraph* decode_graph(int tokens, float* device_logits, const ParallelComm& comm);
  // Records one decode pass (the inputs already at their fixed addresses).
  Result<cuda::CudaGraph> capture(const StepInputs& inputs, float* device_logits);

  cuda::CudaStream stream_;
  CudaDeviceOptions options_;
  std::unique_ptr<cuda::CudaModel> model_;
  cuda::DeviceArena arena_;
  cuda::DeviceBuffer kv_buffer_;
  KvLayers kv_;
  cuda::DeviceBuffer meta_;  // the pass's packed int32 inputs
  cuda::PinnedBuffer meta_host_;
  std::vector<StepPiece> step_pieces_;  // the last upload's pieces (StepInputs::pieces)
  // Captured decode passes by batch size (rows); an empty graph marks a size that cannot be captured.
  std::map<int, std::optional<cuda::CudaGraph>> graphs_;
  cuda::DeviceBuffer expert_counts_;  // [layers × E] int64 (without expert parallelism)
  cuda::DeviceBuffer picked_device_;  // [logit rows] int32 of the last pass
  cuda::PinnedBuffer picked_host_;
  // sample_rows: its workspace for kMaxSampleRows rows, and the choices + edits uploaded per pass.
  cuda::DeviceBuffer sample_workspace_;
  cuda::DeviceBuffer choices_device_;
  cuda::PinnedBuffer choices_host_;
  cuda::DeviceBuffer logprobs_device_;  // [choices with logprobs] SampleLogprobs
  cuda::PinnedBuffer logprobs_host_;
  cuda::OpProfile* profile_ = nullptr;
};

// A TokenChoice as sample_rows takes it: logits row `row`, its edits at edits[edit_begin, + size).
cuda::SampleChoice device_choice(const TokenChoice& choice, int row, int edit_begin);

// device options with what the load options decide: the activation precision from --dtype
// (bfloat16, or auto on a bf16 checkpoint, selects PrefillPrecision::kBf16, vLLM's numerics;
// float32, or auto on a float32 checkpoint, the float32-like kSplitBf16), --quantization fp8 and
// --kv-cache-dtype fp8.
Result<CudaDeviceOptions> cuda_device_options(const ModelConfig& config, const LoadOptions& load,
                                              const CudaDeviceOptions& options);

// The CLI's entry (through runtime/make_runner): a ModelRunner on GPU options.device_index over
// `config` (config.json with load.hf_overrides, parsed once by the caller) and the checkpoint (or
// dummy weights) of model_dir.
Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const std::string& model_dir, const ModelConfig& config,
                                                      const LoadOptions& load, const CudaDeviceOptions& device,
                                                      const ModelRunnerOptions& runner);

// The same over `weights` (null: random weights made on the device), which need not outlive it.
Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const ModelConfig& config, const WeightSource* weights,
                                                      uint64_t seed, const CudaDeviceOptions& device,
                                                      const ModelRunnerOptions& runner);

// The CUDA device under a runner that make_cuda_runner made.
CudaRunnerDevice& cuda_device(ModelRunner& runner);

}  // namespace moeserve
