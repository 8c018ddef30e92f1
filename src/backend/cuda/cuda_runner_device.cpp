#include "backend/cuda/cuda_runner_device.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/cuda/staged_communicator.h"
#include "comm/nccl/nccl_communicator.h"
#include "device/cuda/cuda_device.h"

namespace moeserve {

using cuda::GpuExec;

Result<std::unique_ptr<CudaRunnerDevice>> CudaRunnerDevice::create(const ModelConfig& config,
                                                                   const WeightSource* weights, uint64_t seed,
                                                                   const CudaDeviceOptions& options) {
  MS_ASSIGN_OR_RETURN(cuda::CudaStream stream, cuda::CudaStream::create(options.device_index));
  std::unique_ptr<CudaRunnerDevice> device(new CudaRunnerDevice(std::move(stream), options));
  const GpuExec exec{device->stream_.stream(), device->stream_.blas()};
  MS_ASSIGN_OR_RETURN(device->model_,
                      cuda::CudaModel::load(config, weights, seed, exec, options.prefill_precision, options.shard,
                                            WeightPrecision{.quantize_fp8 = options.quantize_fp8}));
  MS_RETURN_IF_ERROR(device->allocate(config));
  return device;
}

CudaRunnerDevice::~CudaRunnerDevice() {
  if (stream_.stream() != nullptr) stream_.synchronize();
}

Status CudaRunnerDevice::allocate(const ModelConfig& config) {
  const int experts = config.moe ? config.moe->num_experts : 0;
  MS_ASSIGN_OR_RETURN(sample_workspace_, cuda::DeviceBuffer::allocate(
                                             cuda::sample_rows_workspace_bytes(kMaxSampleRows, config.vocab_size)));
  MS_ASSIGN_OR_RETURN(expert_counts_,
                      cuda::DeviceBuffer::allocate(std::max<size_t>(1, size_t(config.num_layers) * experts) * 8));
  reset_expert_load();
  return ok_status();
}

Status CudaRunnerDevice::reserve_workspace(int max_tokens, int max_logit_rows) {
  MS_ASSIGN_OR_RETURN(arena_, cuda::DeviceArena::create(model_->workspace_bytes(max_tokens, max_logit_rows)));
  return ok_status();
}

std::optional<DeviceMemory> CudaRunnerDevice::memory() const {
  const cuda::MemoryInfo memory = cuda::memory_info();
  return DeviceMemory{.free_bytes = memory.free_bytes, .total_bytes = memory.total_bytes};
}

Status CudaRunnerDevice::allocate_kv_cache(int blocks, int block_size) {
  stream_.synchronize();  // a scratch cache may still be in use
  kv_buffer_ = cuda::DeviceBuffer();
  kv_ = KvLayers{.block_size = block_size, .entry_size = model_->kv_entry_size(), .fp8 = options_.kv_cache_fp8};
  if (blocks == 0) return ok_status();
  // A layer's bytes, rounded to 256 so every layer's cache stays aligned for vector access.
  const size_t layer_bytes = (size_t(blocks) * block_size * kv_.entry_size * kv_element_bytes() + 255) / 256 * 256;
  MS_ASSIGN_OR_RETURN(kv_buffer_, cuda::DeviceBuffer::allocate(layer_bytes * model_->config().num_layers));
  for (int layer = 0; layer < model_->config().num_layers; ++layer) {
    kv_.layers.push_back(reinterpret_cast<float*>(kv_buffer_.as<std::byte>() + layer * layer_bytes));
  }
  graphs_.clear();  // they wrote to the old cache
  return ok_status();
}

LoadCounters CudaRunnerDevice::load_counters(ExpertLoad& host) {
  // Under expert parallelism the dispatch plans on the host, and counts there.
  if (options_.shard.expert_parallel) return RunnerDevice::load_counters(host);
  return LoadCounters{.experts = expert_counts_.as<int64_t>()};
}

void CudaRunnerDevice::read_expert_load(ExpertLoad& host) {
  if (options_.shard.expert_parallel || host.counts.empty()) return;
  cuda::copy_to_host(host.counts.data(), expert_counts_.data(), host.counts.size() * 8, stream_.stream());
  stream_.synchronize();
}

void CudaRunnerDevice::reset_expert_load() {
  cuda::fill_zero(expert_counts_.data(), expert_counts_.bytes(), stream_.stream());
}

void CudaRunnerDevice::bind_thread() {
  const Status status = cuda::use_device(options_.device_index);
  MS_CHECK_MSG(status.ok(), status.ok() ? "" : status.error().message.c_str());
}

std::unique_ptr<Communicator> CudaRunnerDevice::device_communicator(std::unique_ptr<Communicator> group) {
  // (a group of one, the start-up profile's EP stand-in, needs no NCCL communicator)
  if (options_.nccl && group->size() > 1) {
    Result<std::unique_ptr<NcclCommunicator>> nccl =
        NcclCommunicator::create(std::move(group), stream_.stream(), options_.device_index);
    if (!nccl.ok()) throw std::runtime_error(nccl.error().message);
    return std::move(nccl.value());
  }
  return std::make_unique<cuda::StagedCommunicator>(std::move(group), stream_.stream());
}

std::string CudaRunnerDevice::describe() const {
  return fmt::format("{:.2f} GiB of bf16 weights, {} activations", model_->weight_bytes() / double(1 << 30),
                     cuda::prefill_precision_name(options_.prefill_precision));
}

void CudaRunnerDevice::idle_pass(const LoadCounters& load, const ParallelComm& comm) {
  arena_.reset();
  const GpuExec exec{stream_.stream(), stream_.blas()};
  model_->forward(exec, arena_, StepInputs{}, kv_, nullptr, load, nullptr, comm);
  stream_.synchronize();
}

int CudaRunnerDevice::query_tile_rows() const {
  // The prefill attention kernels' query tile (see paged_attention_prefill).
  const ModelConfig& c = model_->config();
  return cuda::prefill_tile_rows(c.head_dim, c.num_heads / std::max(1, c.num_kv_heads));
}

StepInputs CudaRunnerDevice::upload_inputs(const PackedStep& step) {
  const size_t words = step.words.size();
  const Status reserved = reserve_meta(words, 2 * words);
  MS_CHECK_MSG(reserved.ok(), reserved.ok() ? "" : reserved.error().message.c_str());
  stream_.synchronize();  // the previous pass has consumed meta_host_
  std::memcpy(meta_host_.data(), step.words.data(), words * sizeof(int32_t));
  cuda::copy_to_device(meta_.data(), meta_host_.data(), words * sizeof(int32_t), stream_.stream());
  step_pieces_ = step.pieces;
  StepInputs inputs = inputs_at(step.tokens, step.logit_rows, step.tiles);
  inputs.pieces = step_pieces_;
  return inputs;
}

void CudaRunnerDevice::run_pass(const PackedStep& step, std::span<const PassPiece> pieces, const LoadCounters& load,
                                const ParallelComm& comm, const PassOutput& out) {
  const StepInputs inputs = upload_inputs(step);
  const int tokens = inputs.tokens;
  const int logit_rows = inputs.logit_rows;
  arena_.reset();
  const int vocab = model_->config().vocab_size;
  float* device_logits = arena_.alloc<float>(std::max<size_t>(1, size_t(logit_rows) * vocab));
  const GpuExec exec{stream_.stream(), stream_.blas()};
  // A decode pass: one sampled row per sequence.
  const bool decode = logit_rows == tokens && static_cast<int>(pieces.size()) == tokens;
  const cuda::CudaGraph* graph =
      decode && profile_ == nullptr && out.host_logits != nullptr ? decode_graph(tokens, device_logits, comm) : nullptr;
  if (graph != nullptr) {
    graph->launch(stream_.stream());
  } else {
    model_->forward(exec, arena_, inputs, kv_, device_logits, load, profile_, comm);
  }
  if (out.host_logits == nullptr) return;
  // The argmax of every row (greedy sequences need nothing else), the sampled rows' tokens over
  // it, then the rows someone reads.
  if (picked_device_.bytes() < size_t(logit_rows) * 4) {
    picked_device_ = std::move(cuda::DeviceBuffer::allocate(size_t(logit_rows) * 8).value());
    picked_host_ = std::move(cuda::PinnedBuffer::allocate(size_t(logit_rows) * 8).value());
  }
  cuda::argmax_rows(exec, device_logits, logit_rows, vocab, picked_device_.as<int32_t>());
  const std::vector<std::pair<int, int>> logprob_rows = sample_on_device(pieces, device_logits);
  cuda::copy_to_host(picked_host_.data(), picked_device_.data(), size_t(logit_rows) * 4, stream_.stream());
  int logits_row = 0, run_begin = 0, run_rows = 0;  // a run of consecutive rows to copy
  auto copy_run = [&] {
    if (run_rows == 0) return;
    const size_t offset = size_t(run_begin) * vocab;
    cuda::copy_to_host(out.host_logits + offset, device_logits + offset, size_t(run_rows) * vocab * sizeof(float),
                       stream_.stream());
    run_rows = 0;
  };
  for (const PassPiece& p : pieces) {
    const int rows = p.logit_rows();
    if (p.choice != nullptr) {
      copy_run();
    } else if (rows > 0) {
      if (run_rows == 0) run_begin = logits_row;
      run_rows += rows;
    }
    logits_row += rows;
  }
  copy_run();
  stream_.synchronize();
  const auto* picked = static_cast<const int32_t*>(picked_host_.data());
  out.tokens->insert(out.tokens->end(), picked, picked + logit_rows);
  const size_t first_row = out.logprobs->size();
  out.logprobs->resize(first_row + logit_rows);
  const auto* logprobs = static_cast<const cuda::SampleLogprobs*>(logprobs_host_.data());
  for (const auto& [index, row] : logprob_rows) {
    const cuda::SampleLogprobs& lp = logprobs[index];
    TokenLogprob& picked_logprob = (*out.logprobs)[first_row + row];
    picked_logprob.token_id = picked[row];
    picked_logprob.logprob = lp.logprob;
    for (int j = 0; j < lp.top_count; ++j) picked_logprob.top.emplace_back(lp.top_ids[j], lp.top_logprobs[j]);
  }
}

std::vector<std::pair<int, int>> CudaRunnerDevice::sample_on_device(std::span<const PassPiece> pieces,
                                                                    const float* device_logits) {
  static_assert(sizeof(cuda::SampleEdit) == sizeof(LogitEdit));
  std::vector<cuda::SampleChoice> choices;
  std::vector<LogitEdit> edits;
  std::vector<std::pair<int, int>> logprob_rows;
  int row = 0;
  for (const PassPiece& p : pieces) {
    if (p.choice != nullptr && !p.choice->argmax_only()) {
      // Logprobs are of the raw row, which the sorted row only is without edits.
      MS_CHECK(p.choice->logprobs <= cuda::kMaxSampleLogprobs);
      MS_CHECK(p.choice->logprobs < 0 || p.choice->edits.empty());
      if (p.choice->logprobs >= 0) logprob_rows.emplace_back(static_cast<int>(choices.size()), row);
      choices.push_back(device_choice(*p.choice, row, static_cast<int>(edits.size())));
      edits.insert(edits.end(), p.choice->edits.begin(), p.choice->edits.end());
    }
    row += p.logit_rows();
  }
  if (choices.empty()) return logprob_rows;
  // One upload: choices, then edits (both 16-byte multiples).
  const size_t choice_bytes = choices.size() * sizeof(cuda::SampleChoice);
  const size_t bytes = choice_bytes + edits.size() * sizeof(LogitEdit);
  if (choices_host_.bytes() < bytes) {  // grows to the largest step's (penalties over long prompts)
    choices_host_ = std::move(cuda::PinnedBuffer::allocate(2 * bytes).value());
    choices_device_ = std::move(cuda::DeviceBuffer::allocate(2 * bytes).value());
  }
  auto* host = static_cast<char*>(choices_host_.data());
  std::memcpy(host, choices.data(), choice_bytes);
  std::memcpy(host + choice_bytes, edits.data(), bytes - choice_bytes);
  cuda::copy_to_device(choices_device_.data(), host, bytes, stream_.stream());
  const auto* device_choices = choices_device_.as<cuda::SampleChoice>();
  const auto* device_edits =
      reinterpret_cast<const cuda::SampleEdit*>(static_cast<const char*>(choices_device_.data()) + choice_bytes);
  // Logprobs come out per choice; a choice without them writes nothing there.
  const size_t logprob_bytes = choices.size() * sizeof(cuda::SampleLogprobs);
  if (!logprob_rows.empty() && logprobs_host_.bytes() < logprob_bytes) {
    logprobs_host_ = std::move(cuda::PinnedBuffer::allocate(2 * logprob_bytes).value());
    logprobs_device_ = std::move(cuda::DeviceBuffer::allocate(2 * logprob_bytes).value());
  }
  auto* device_logprobs = logprob_rows.empty() ? nullptr : logprobs_device_.as<cuda::SampleLogprobs>();
  const GpuExec exec{stream_.stream(), stream_.blas()};
  for (size_t first = 0; first < choices.size(); first += kMaxSampleRows) {
    const int rows = static_cast<int>(std::min<size_t>(kMaxSampleRows, choices.size() - first));
    cuda::sample_rows(exec, device_logits, model_->config().vocab_size, device_choices + first, rows, device_edits,
                      sample_workspace_.data(), sample_workspace_.bytes(), picked_device_.as<int32_t>(),
                      device_logprobs == nullptr ? nullptr : device_logprobs + first);
  }
  if (!logprob_rows.empty()) {
    cuda::copy_to_host(logprobs_host_.data(), logprobs_device_.data(), logprob_bytes, stream_.stream());
  }
  return logprob_rows;
}

StepInputs CudaRunnerDevice::inputs_at(int tokens, int logit_rows, int tiles) const {
  return step_inputs_at(meta_.as<int32_t>(), tokens, logit_rows, tiles, query_tile_rows());
}

const cuda::CudaGraph* CudaRunnerDevice::decode_graph(int tokens, float* device_logits, const ParallelComm& comm) {
  const bool collectives = comm.tp != nullptr || comm.ep != nullptr;
  if (options_.enforce_eager || collectives || tokens > kMaxGraphTokens) return nullptr;
  auto it = graphs_.find(tokens);
  if (it == graphs_.end()) {
    // An empty entry marks a size that runs eagerly: the model needs the host inside the step.
    std::optional<cuda::CudaGraph> captured;
    if (model_->capturable(tokens)) {
      Result<cuda::CudaGraph> graph_or = capture(inputs_at(tokens, tokens, tokens), device_logits);
      if (graph_or.ok()) {
        captured = std::move(graph_or.value());
      } else {
        spdlog::warn("decode steps of {} sequences run without a CUDA graph: {}", tokens, graph_or.error().message);
      }
    }
    it = graphs_.emplace(tokens, std::move(captured)).first;
  }
  return it->second.has_value() ? &*it->second : nullptr;
}

Status CudaRunnerDevice::reserve_meta(size_t words, size_t capacity) {
  if (meta_host_.bytes() >= words * 4) return ok_status();
  stream_.synchronize();  // the old buffers may still be in use by the last step
  MS_ASSIGN_OR_RETURN(meta_host_, cuda::PinnedBuffer::allocate(capacity * 4));
  MS_ASSIGN_OR_RETURN(meta_, cuda::DeviceBuffer::allocate(capacity * 4));
  graphs_.clear();
  return ok_status();
}

Status CudaRunnerDevice::capture_decode_graphs(int max_batch, size_t words) {
  if (options_.enforce_eager) return ok_status();
  max_batch = std::min(max_batch, kMaxGraphTokens);
  const auto start = std::chrono::steady_clock::now();
  MS_RETURN_IF_ERROR(reserve_meta(words, words));
  const int vocab = model_->config().vocab_size;
  for (int tokens = 1; tokens <= max_batch; ++tokens) {
    arena_.reset();  // as run_pass: the logits are the pass's first allocation
    decode_graph(tokens, arena_.alloc<float>(size_t(tokens) * vocab), ParallelComm{});
  }
  stream_.synchronize();
  spdlog::info("captured {} decode CUDA graphs (batch 1-{}) in {:.2f} s", num_graphs(), max_batch,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return ok_status();
}

cuda::SampleChoice device_choice(const TokenChoice& choice, int row, int edit_begin) {
  const SamplingParams& params = choice.params;
  return cuda::SampleChoice{.row = row,
                            .top_k = params.top_k,
                            .temperature = params.temperature,
                            .top_p = params.top_p,
                            .min_p = params.min_p,
                            .repetition_penalty = params.repetition_penalty,
                            .presence_penalty = params.presence_penalty,
                            .frequency_penalty = params.frequency_penalty,
                            .uniform = choice.uniform,
                            .edit_begin = edit_begin,
                            .edit_end = edit_begin + static_cast<int32_t>(choice.edits.size()),
                            .logprobs = choice.logprobs};
}

Result<cuda::CudaGraph> CudaRunnerDevice::capture(const StepInputs& inputs, float* device_logits) {
  // The arena hands the captured kernels the workspace an eager step of this size would get.
  const size_t mark = arena_.used();
  const GpuExec exec{stream_.stream(), stream_.blas()};
  MS_RETURN_IF_ERROR(cuda::CudaGraph::begin_capture(stream_.stream()));
  model_->forward(exec, arena_, inputs, kv_, device_logits, LoadCounters{.experts = expert_counts_.as<int64_t>()},
                  nullptr);
  Result<cuda::CudaGraph> graph = cuda::CudaGraph::end_capture(stream_.stream());
  arena_.rewind(mark);
  return graph;
}

Result<CudaDeviceOptions> cuda_device_options(const ModelConfig& config, const LoadOptions& load,
                                              const CudaDeviceOptions& device_options) {
  CudaDeviceOptions options = device_options;
  options.quantize_fp8 = load.model.precision.quantize_fp8;
  options.kv_cache_fp8 = load.kv_cache_fp8;
  // --dtype, as vLLM reads it: auto is the checkpoint's dtype, so a bf16 checkpoint multiplies
  // bf16 GEMM inputs; float32 keeps the float32-like split-bf16 activations.
  const bool bf16 = load.dtype == ActivationDType::kBFloat16 ||
                    (load.dtype == ActivationDType::kAuto && config.dtype == DType::kBF16);
  options.prefill_precision = bf16 ? cuda::PrefillPrecision::kBf16 : cuda::PrefillPrecision::kSplitBf16;
  return options;
}

Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const std::string& model_dir, const ModelConfig& config,
                                                      const LoadOptions& load, const CudaDeviceOptions& device_options,
                                                      const ModelRunnerOptions& runner_options) {
  MS_ASSIGN_OR_RETURN(const CudaDeviceOptions options, cuda_device_options(config, load, device_options));
  // The checkpoint, or none: dummy weights are made on the GPU.
  std::unique_ptr<WeightSource> weights;
  if (load.load_format != LoadFormat::kDummy) {
    MS_ASSIGN_OR_RETURN(weights, open_weights(model_dir, load));
  }
  return make_cuda_runner(config, weights.get(), load.seed, options, runner_options);
}

Result<std::unique_ptr<ModelRunner>> make_cuda_runner(const ModelConfig& config, const WeightSource* weights,
                                                      uint64_t seed, const CudaDeviceOptions& device_options,
                                                      const ModelRunnerOptions& runner_options) {
  MS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunnerDevice> device,
                      CudaRunnerDevice::create(config, weights, seed, device_options));
  return ModelRunner::create(std::move(device), runner_options);
}

CudaRunnerDevice& cuda_device(ModelRunner& runner) {
  auto* device = dynamic_cast<CudaRunnerDevice*>(&runner.device());
  MS_CHECK_MSG(device != nullptr, "not a CUDA runner");
  return *device;
}

}  // namespace moeserve
