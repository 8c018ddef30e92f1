#include "runtime/cuda/cuda_runner.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <vector>

#include <spdlog/spdlog.h>

#include "comm/local/local_communicator.h"
#include "loader/checkpoint.h"
#include "runtime/step_packing.h"

namespace moeserve {

using cuda::GpuExec;

Result<std::unique_ptr<CudaRunner>> CudaRunner::create(const ModelConfig& config, const WeightSource* weights,
                                                       uint64_t seed, const CudaRunnerOptions& options) {
  if (options.block_size <= 0) return make_error("--block-size must be positive, got {}", options.block_size);
  if (options.max_num_batched_tokens <= 0) return make_error("--max-num-batched-tokens must be positive");
  MS_ASSIGN_OR_RETURN(cuda::CudaStream stream, cuda::CudaStream::create(options.device_index));
  std::unique_ptr<CudaRunner> runner(new CudaRunner(std::move(stream), options));
  const GpuExec exec{runner->stream_.stream(), runner->stream_.blas()};
  MS_ASSIGN_OR_RETURN(runner->model_,
                      cuda::CudaModel::load(config, weights, seed, exec, options.prefill_precision, options.shard));
  MS_RETURN_IF_ERROR(runner->allocate(seed));
  if (!options.enforce_eager && options.capture_batch_sizes > 0) {
    MS_RETURN_IF_ERROR(runner->capture_decode_graphs(std::min(options.capture_batch_sizes, kMaxGraphTokens)));
  }
  return runner;
}

CudaRunner::~CudaRunner() {
  if (stream_.stream() != nullptr) stream_.synchronize();
}

Status CudaRunner::allocate(uint64_t seed) {
  const ModelConfig& config = model_->config();
  MS_ASSIGN_OR_RETURN(arena_, cuda::DeviceArena::create(model_->workspace_bytes(options_.max_num_batched_tokens)));
  const int experts = config.moe ? config.moe->num_experts : 0;
  MS_ASSIGN_OR_RETURN(sample_workspace_, cuda::DeviceBuffer::allocate(
                                             cuda::sample_rows_workspace_bytes(kMaxSampleRows, config.vocab_size)));
  MS_ASSIGN_OR_RETURN(expert_counts_,
                      cuda::DeviceBuffer::allocate(std::max<size_t>(1, size_t(config.num_layers) * experts) * 8));
  if (options_.shard.expert_parallel) {
    slot_counts_.assign(size_t(config.num_layers) * (experts + options_.shard.num_redundant_experts), 0);
  }
  const size_t bytes_per_block = kv_bytes_per_block();
  MS_RETURN_IF_ERROR(profile_run(bytes_per_block));
  reset_expert_load();
  if (options_.defer_kv_cache) return ok_status();
  num_kv_blocks_ = options_.num_kv_blocks;
  if (num_kv_blocks_ <= 0) {
    const cuda::MemoryInfo memory = cuda::memory_info();
    const double allowed = memory.total_bytes * static_cast<double>(options_.gpu_memory_utilization);
    const double in_use = static_cast<double>(memory.total_bytes - memory.free_bytes);
    num_kv_blocks_ = static_cast<int>(std::max(0.0, (allowed - in_use) / static_cast<double>(bytes_per_block)));
    if (num_kv_blocks_ <= 0) {
      return make_error("no GPU memory is left for the KV cache at --gpu-memory-utilization {} (weights {:.1f} GiB): "
                        "raise it or lower --max-num-batched-tokens",
                        options_.gpu_memory_utilization, model_->weight_bytes() / double(1 << 30));
    }
  }
  return allocate_kv_cache(num_kv_blocks_);
}

size_t CudaRunner::kv_bytes_per_block() const {
  return size_t(model_->config().num_layers) * options_.block_size * model_->kv_entry_size() * sizeof(float);
}

Status CudaRunner::allocate_kv_cache(int blocks) {
  MS_CHECK(kv_buffer_.bytes() == 0 && blocks > 0);
  Result<cuda::DeviceBuffer> buffer = cuda::DeviceBuffer::allocate(kv_bytes_per_block() * blocks);
  if (!buffer.ok()) {
    return make_error("no GPU memory for a KV cache of {} blocks x {} tokens: {}", blocks, options_.block_size,
                      buffer.error().message);
  }
  kv_buffer_ = std::move(buffer.value());
  set_kv(kv_buffer_, blocks);
  return ok_status();
}

void CudaRunner::set_kv(const cuda::DeviceBuffer& buffer, int blocks) {
  num_kv_blocks_ = blocks;
  kv_.block_size = options_.block_size;
  kv_.entry_size = model_->kv_entry_size();
  kv_.layers.clear();
  const size_t layer_floats = size_t(blocks) * options_.block_size * kv_.entry_size;
  for (int layer = 0; layer < model_->config().num_layers; ++layer)
    kv_.layers.push_back(buffer.as<float>() + layer * layer_floats);
}

Status CudaRunner::profile_run(size_t bytes_per_block) {
  const int tokens = options_.max_num_batched_tokens;
  const int blocks = (tokens + options_.block_size - 1) / options_.block_size;
  Result<cuda::DeviceBuffer> scratch_or = cuda::DeviceBuffer::allocate(bytes_per_block * blocks);
  if (!scratch_or.ok()) {
    return make_error("no GPU memory for the start-up profile run of a {}-token step ({}): lower "
                      "--max-num-batched-tokens or free GPU memory",
                      tokens, scratch_or.error().message);
  }
  const cuda::DeviceBuffer scratch = std::move(scratch_or.value());
  set_kv(scratch, blocks);
  // One token repeated: every row routes to the same experts, the most rows one expert can get.
  const std::vector<int32_t> ids(tokens, 0);
  std::vector<BlockId> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  const RunnerSeq seq{.tokens = ids, .num_new = tokens, .all_logits = true, .block_table = table};
  const Piece piece{&seq, 0, tokens, true, false, nullptr};
  const StepInputs inputs = upload_inputs(std::span(&piece, 1));
  stream_.synchronize();
  const size_t free_before = cuda::memory_info().free_bytes;
  arena_.reset();
  float* logits = arena_.alloc<float>(size_t(tokens) * model_->config().vocab_size);
  const GpuExec exec{stream_.stream(), stream_.blas()};
  // With expert parallelism and no EP group yet (ranks join theirs after loading), a group of
  // one: its dispatch sizes the workspace as a rank's own tokens would.
  std::unique_ptr<LocalGroup> solo;
  std::unique_ptr<Communicator> solo_ep;
  ParallelComm comm = comm_;
  if (options_.shard.expert_parallel && comm.ep == nullptr) {
    solo = std::make_unique<LocalGroup>(1);
    solo_ep = solo->communicator(0);
    comm.ep = solo_ep.get();
  }
  model_->forward(exec, arena_, inputs, kv_, logits, load_counters(), nullptr, comm);
  stream_.synchronize();
  profiled_outside_arena_ = free_before - std::min(free_before, cuda::memory_info().free_bytes);
  set_kv(kv_buffer_, 0);
  spdlog::info("profiled the largest step ({} tokens, every row's logits): workspace peak {:.2f} of {:.2f} GiB, "
               "{:.2f} GiB allocated outside it",
               tokens, arena_.peak() / double(1 << 30), arena_.capacity() / double(1 << 30),
               profiled_outside_arena_ / double(1 << 30));
  return ok_status();
}

const ExpertLoad& CudaRunner::expert_load() const {
  const ModelConfig& config = model_->config();
  const int experts = config.moe ? config.moe->num_experts : 0;
  expert_load_.num_experts = experts;
  expert_load_.counts.assign(size_t(config.num_layers) * experts, 0);
  cuda::copy_to_host(expert_load_.counts.data(), expert_counts_.data(), expert_load_.counts.size() * 8,
                     stream_.stream());
  stream_.synchronize();
  expert_load_.slot_counts = slot_counts_;
  expert_load_.num_slots = slot_counts_.empty() ? 0 : experts + options_.shard.num_redundant_experts;
  return expert_load_;
}

void CudaRunner::reset_expert_load() {
  cuda::fill_zero(expert_counts_.data(), expert_counts_.bytes(), stream_.stream());
  std::fill(slot_counts_.begin(), slot_counts_.end(), 0);
}

LoadCounters CudaRunner::load_counters() {
  return LoadCounters{.experts = expert_counts_.as<int64_t>(),
                      .slots = slot_counts_.empty() ? nullptr : slot_counts_.data()};
}

Tensor CudaRunner::execute(std::span<const RunnerSeq> seqs) {
  int rows = 0;
  for (const RunnerSeq& seq : seqs) rows += seq.all_logits ? seq.num_new : (seq.samples ? 1 : 0);
  // Every row is overwritten by the copy back from the device.
  Tensor logits = Tensor::uninitialized(DType::kF32, Shape{rows, model_->config().vocab_size});
  picked_.clear();
  picked_logprobs_.clear();
  // Cut the step into forward passes of at most max_num_batched_tokens rows, in order.
  std::vector<std::vector<Piece>> passes(1);
  int budget = options_.max_num_batched_tokens;
  for (const RunnerSeq& seq : seqs) {
    for (int done = 0; done < seq.num_new;) {
      if (budget == 0) {
        passes.emplace_back();
        budget = options_.max_num_batched_tokens;
      }
      const int count = std::min(budget, seq.num_new - done);
      const bool last = done + count == seq.num_new;
      const bool logits_last = !seq.all_logits && seq.samples && last;
      passes.back().push_back(
          Piece{&seq, seq.num_computed + done, count, seq.all_logits, logits_last, logits_last ? seq.choice : nullptr});
      budget -= count;
      done += count;
    }
  }
  if (passes.back().empty()) passes.pop_back();
  // Under expert parallelism every rank runs as many passes as the busiest one (the dispatch is
  // collective), the ones it lacks as idle passes that serve the other ranks' tokens.
  size_t num_passes = passes.size();
  if (comm_.ep != nullptr) {
    for (const int64_t n : comm_.ep->all_gather_value(static_cast<int64_t>(passes.size()))) {
      num_passes = std::max(num_passes, static_cast<size_t>(n));
    }
  }
  float* dst = logits.f32();
  const GpuExec exec{stream_.stream(), stream_.blas()};
  for (size_t pass = 0; pass < num_passes; ++pass) {
    if (pass >= passes.size()) {
      arena_.reset();
      model_->forward(exec, arena_, StepInputs{}, kv_, nullptr, load_counters(), nullptr, comm_);
      stream_.synchronize();
      continue;
    }
    run_pieces(passes[pass], dst);
    for (const Piece& piece : passes[pass]) dst += int64_t(piece.logit_rows()) * model_->config().vocab_size;
  }
  return logits;
}

namespace {

// Query tile rows for the prefill attention kernels (see paged_attention_prefill).
int query_tile_rows(const ModelConfig& c) {
  return cuda::prefill_tile_rows(c.head_dim, c.num_heads / std::max(1, c.num_kv_heads));
}

}  // namespace

StepInputs CudaRunner::upload_inputs(std::span<const Piece> pieces) {
  std::vector<StepPieceSource> sources;
  for (const Piece& p : pieces) {
    sources.push_back(StepPieceSource{.tokens = p.seq->tokens,
                                      .block_table = p.seq->block_table,
                                      .begin = p.begin,
                                      .count = p.count,
                                      .logits_all = p.logits_all,
                                      .logits_last = p.logits_last});
  }
  PackedStep packed = pack_step(sources, options_.block_size, query_tile_rows(model_->config()),
                                model_->config().vocab_size, num_kv_blocks_);
  const size_t words = packed.words.size();
  const Status reserved = reserve_meta(words, 2 * words);
  MS_CHECK_MSG(reserved.ok(), reserved.error().message.c_str());
  stream_.synchronize();  // the previous step has consumed meta_host_
  std::memcpy(meta_host_.data(), packed.words.data(), words * sizeof(int32_t));
  cuda::copy_to_device(meta_.data(), meta_host_.data(), words * sizeof(int32_t), stream_.stream());
  step_pieces_ = std::move(packed.pieces);
  StepInputs inputs = inputs_at(packed.tokens, packed.logit_rows, packed.tiles);
  inputs.pieces = step_pieces_;
  return inputs;
}

void CudaRunner::run_pieces(std::span<const Piece> pieces, float* host_logits) {
  const StepInputs inputs = upload_inputs(pieces);
  const int tokens = inputs.tokens;
  const int logit_rows = inputs.logit_rows;
  arena_.reset();
  const int vocab = model_->config().vocab_size;
  float* device_logits = arena_.alloc<float>(std::max<size_t>(1, size_t(logit_rows) * vocab));
  const GpuExec exec{stream_.stream(), stream_.blas()};
  // A decode step: one sampled row per sequence.
  const bool decode = logit_rows == tokens && static_cast<int>(pieces.size()) == tokens;
  const cuda::CudaGraph* graph = decode && profile_ == nullptr ? decode_graph(tokens, device_logits) : nullptr;
  if (graph != nullptr) {
    graph->launch(stream_.stream());
  } else {
    model_->forward(exec, arena_, inputs, kv_, device_logits, load_counters(), profile_, comm_);
  }
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
    cuda::copy_to_host(host_logits + offset, device_logits + offset, size_t(run_rows) * vocab * sizeof(float),
                       stream_.stream());
    run_rows = 0;
  };
  for (const Piece& p : pieces) {
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
  picked_.insert(picked_.end(), picked, picked + logit_rows);
  const size_t first_row = picked_logprobs_.size();
  picked_logprobs_.resize(first_row + logit_rows);
  const auto* logprobs = static_cast<const cuda::SampleLogprobs*>(logprobs_host_.data());
  for (const auto& [index, row] : logprob_rows) {
    const cuda::SampleLogprobs& lp = logprobs[index];
    TokenLogprob& out = picked_logprobs_[first_row + row];
    out.token_id = picked[row];
    out.logprob = lp.logprob;
    for (int j = 0; j < lp.top_count; ++j) out.top.emplace_back(lp.top_ids[j], lp.top_logprobs[j]);
  }
}

std::vector<std::pair<int, int>> CudaRunner::sample_on_device(std::span<const Piece> pieces,
                                                              const float* device_logits) {
  static_assert(sizeof(cuda::SampleEdit) == sizeof(LogitEdit));
  std::vector<cuda::SampleChoice> choices;
  std::vector<LogitEdit> edits;
  std::vector<std::pair<int, int>> logprob_rows;
  int row = 0;
  for (const Piece& p : pieces) {
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

StepInputs CudaRunner::inputs_at(int tokens, int logit_rows, int tiles) const {
  return step_inputs_at(meta_.as<int32_t>(), tokens, logit_rows, tiles, query_tile_rows(model_->config()));
}

const cuda::CudaGraph* CudaRunner::decode_graph(int tokens, float* device_logits) {
  const bool collectives = comm_.tp != nullptr || comm_.ep != nullptr;
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

Status CudaRunner::reserve_meta(size_t words, size_t capacity) {
  if (meta_host_.bytes() >= words * 4) return ok_status();
  stream_.synchronize();  // the old buffers may still be in use by the last step
  MS_ASSIGN_OR_RETURN(meta_host_, cuda::PinnedBuffer::allocate(capacity * 4));
  MS_ASSIGN_OR_RETURN(meta_, cuda::DeviceBuffer::allocate(capacity * 4));
  graphs_.clear();
  return ok_status();
}

Status CudaRunner::capture_decode_graphs(int max_batch) {
  const auto start = std::chrono::steady_clock::now();
  // The metadata buffer the graphs read, sized so that steps rarely outgrow it (which would
  // drop the graphs): every row of the largest forward pass, plus block tables of 4× the pool.
  const size_t rows = std::max(options_.max_num_batched_tokens, max_batch);
  const size_t words = 7 * rows + 4 * size_t(num_kv_blocks_);
  MS_RETURN_IF_ERROR(reserve_meta(words, words));
  const int vocab = model_->config().vocab_size;
  for (int tokens = 1; tokens <= max_batch; ++tokens) {
    arena_.reset();  // as run_pieces: the logits are the step's first allocation
    decode_graph(tokens, arena_.alloc<float>(size_t(tokens) * vocab));
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

Result<cuda::CudaGraph> CudaRunner::capture(const StepInputs& inputs, float* device_logits) {
  // The arena hands the captured kernels the workspace an eager step of this size would get.
  const size_t mark = arena_.used();
  const GpuExec exec{stream_.stream(), stream_.blas()};
  MS_RETURN_IF_ERROR(cuda::CudaGraph::begin_capture(stream_.stream()));
  model_->forward(exec, arena_, inputs, kv_, device_logits, load_counters(), nullptr);
  Result<cuda::CudaGraph> graph = cuda::CudaGraph::end_capture(stream_.stream());
  arena_.rewind(mark);
  return graph;
}

Result<CudaRunnerOptions> cuda_runner_options(const ModelConfig& config, const LoadOptions& load,
                                              const CudaRunnerOptions& runner_options) {
  if (load.quantize_fp8) {
    return make_error("--quantization fp8: the CUDA backend has no FP8 GEMM kernels yet, so it cannot compute with "
                      "fp8 weights; the CPU backend does (--device cpu). An fp8 checkpoint needs no flag: CUDA "
                      "dequantizes it to bf16 as it loads");
  }
  if (load.kv_cache_fp8) {
    return make_error("--kv-cache-dtype fp8: the CUDA KV cache and attention kernels are float32 only for now; the "
                      "CPU backend (--device cpu) runs fp8 KV numerics");
  }
  CudaRunnerOptions options = runner_options;
  // --dtype, as vLLM reads it: auto is the checkpoint's dtype, so a bf16 checkpoint multiplies
  // bf16 GEMM inputs; float32 keeps the float32-like split-bf16 activations.
  const bool bf16 = load.dtype == ActivationDType::kBFloat16 ||
                    (load.dtype == ActivationDType::kAuto && config.dtype == DType::kBF16);
  options.prefill_precision = bf16 ? cuda::PrefillPrecision::kBf16 : cuda::PrefillPrecision::kSplitBf16;
  return options;
}

Result<std::unique_ptr<CudaRunner>> make_cuda_runner(const std::string& model_dir, const ModelConfig& config,
                                                     const LoadOptions& load, const CudaRunnerOptions& runner_options) {
  MS_ASSIGN_OR_RETURN(const CudaRunnerOptions options, cuda_runner_options(config, load, runner_options));
  if (load.load_format == LoadFormat::kDummy) return CudaRunner::create(config, nullptr, load.seed, options);
  MS_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(model_dir));
  return CudaRunner::create(config, &checkpoint, load.seed, options);
}

}  // namespace moeserve
