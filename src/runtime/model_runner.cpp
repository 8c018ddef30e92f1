#include "runtime/model_runner.h"

#include <algorithm>
#include <limits>
#include <map>

#include <spdlog/spdlog.h>

#include "comm/local/local_communicator.h"

namespace moeserve {

int kv_blocks_within(const DeviceMemory& memory, double utilization, size_t bytes_per_block) {
  const double allowed = static_cast<double>(memory.total_bytes) * utilization;
  const double in_use = static_cast<double>(memory.total_bytes - memory.free_bytes);
  return static_cast<int>(std::max(0.0, (allowed - in_use) / static_cast<double>(bytes_per_block)));
}

Result<int> kv_blocks_shared(std::span<const RankMemory> ranks, double utilization) {
  std::map<std::string, std::pair<DeviceMemory, size_t>> gpus;  // per GPU: its memory, bytes per block
  for (const RankMemory& rank : ranks) {
    auto [it, inserted] = gpus.emplace(rank.gpu, std::pair(rank.memory, size_t{0}));
    // The least free memory any of its ranks saw (they looked after all of them had loaded).
    it->second.first.free_bytes = std::min(it->second.first.free_bytes, rank.memory.free_bytes);
    it->second.second += rank.bytes_per_block;
  }
  int blocks = std::numeric_limits<int>::max();
  for (const auto& [gpu, use] : gpus) blocks = std::min(blocks, kv_blocks_within(use.first, utilization, use.second));
  if (gpus.empty() || blocks <= 0) {
    return make_error("no GPU memory is left for the KV cache at --gpu-memory-utilization {} once every rank has "
                      "loaded: raise it, lower --max-num-batched-tokens or use fewer ranks per GPU",
                      utilization);
  }
  return blocks;
}

ModelRunner::ModelRunner(std::unique_ptr<RunnerDevice> device, const ModelRunnerOptions& options)
    : device_(std::move(device)), options_(options) {
  // The logit-row cap, whole: the pass's rows at most, and at least the graphs' batch sizes.
  const int rows = options_.max_num_batched_tokens;
  options_.max_logit_rows = options_.max_logit_rows > 0
                                ? std::clamp(std::max(options_.max_logit_rows, options_.capture_batch_sizes), 1, rows)
                                : rows;
  const ModelConfig& config = device_->config();
  const int experts = config.moe ? config.moe->num_experts : 0;
  expert_load_.num_experts = experts;
  expert_load_.counts.assign(size_t(config.num_layers) * experts, 0);
  if (device_->shard().expert_parallel && experts > 0) {
    expert_load_.num_slots = experts + device_->shard().num_redundant_experts;
    expert_load_.slot_counts.assign(size_t(config.num_layers) * expert_load_.num_slots, 0);
  }
}

Result<std::unique_ptr<ModelRunner>> ModelRunner::create(std::unique_ptr<RunnerDevice> device,
                                                         const ModelRunnerOptions& options) {
  if (options.block_size <= 0) return make_error("--block-size must be positive, got {}", options.block_size);
  if (options.max_num_batched_tokens <= 0) return make_error("--max-num-batched-tokens must be positive");
  std::unique_ptr<ModelRunner> runner(new ModelRunner(std::move(device), options));
  RunnerDevice& dev = *runner->device_;
  MS_RETURN_IF_ERROR(dev.reserve_workspace(options.max_num_batched_tokens, runner->options_.max_logit_rows));
  // Devices that size their KV cache from free memory profile the largest step first.
  if (dev.memory().has_value()) MS_RETURN_IF_ERROR(runner->profile_run());
  runner->reset_expert_load();
  if (options.defer_kv_cache) return runner;
  int blocks = options.num_kv_blocks;
  if (blocks <= 0) {
    if (!dev.memory().has_value()) {
      return make_error("the KV cache budget holds no block of {} tokens: raise --kv-cache-memory", options.block_size);
    }
    MS_ASSIGN_OR_RETURN(blocks, runner->kv_blocks_from_memory());
  }
  MS_RETURN_IF_ERROR(runner->allocate_kv_cache(blocks));
  if (options.capture_batch_sizes > 0) {
    // The packed inputs the graphs read, sized so that steps rarely outgrow them (which would
    // drop the graphs): every row of the largest pass, plus block tables of 4× the pool.
    const size_t rows = std::max(options.max_num_batched_tokens, options.capture_batch_sizes);
    MS_RETURN_IF_ERROR(dev.capture_decode_graphs(options.capture_batch_sizes, 7 * rows + 4 * size_t(blocks)));
  }
  return runner;
}

size_t ModelRunner::kv_bytes_per_block() const {
  return size_t(config().num_layers) * options_.block_size * device_->kv_entry_size() * device_->kv_element_bytes();
}

Result<int> ModelRunner::kv_blocks_from_memory() const {
  device_->synchronize();
  const int blocks = kv_blocks_within(*device_->memory(), options_.gpu_memory_utilization, kv_bytes_per_block());
  if (blocks <= 0) {
    return make_error("no GPU memory is left for the KV cache at --gpu-memory-utilization {} (weights {:.1f} GiB): "
                      "raise it or lower --max-num-batched-tokens",
                      options_.gpu_memory_utilization, device_->weight_bytes() / double(1 << 30));
  }
  return blocks;
}

Status ModelRunner::allocate_kv_cache(int blocks) {
  MS_CHECK(device_->kv_bytes() == 0 && blocks > 0);
  const Status allocated = device_->allocate_kv_cache(blocks, options_.block_size);
  if (!allocated.ok()) {
    return make_error("no memory for a KV cache of {} blocks x {} tokens: {}", blocks, options_.block_size,
                      allocated.error().message);
  }
  num_kv_blocks_ = blocks;
  return ok_status();
}

ProfileStep profile_step(int tokens, int logit_rows, int block_size) {
  ProfileStep step;
  logit_rows = std::clamp(logit_rows, 1, tokens);
  // One sequence of every row's logits, or (a server's cap) one long sequence and logit_rows - 1
  // of one token each, every one sampling its last row.
  const int sequences = logit_rows == tokens ? 1 : logit_rows;
  const int first = tokens - (sequences - 1);
  const bool all_logits = sequences == 1;
  step.ids.assign(tokens, 0);
  step.tables.resize(sequences);  // (sized first: the sequences' spans point into its vectors)
  for (int s = 0; s < sequences; ++s) {
    const int count = s == 0 ? first : 1;
    for (int b = 0; b < (count + block_size - 1) / block_size; ++b) step.tables[s].push_back(step.blocks++);
    step.seqs.push_back(RunnerSeq{.tokens = std::span(step.ids).subspan(0, count),
                                  .num_new = count,
                                  .samples = !all_logits,
                                  .all_logits = all_logits,
                                  .block_table = step.tables[s]});
  }
  return step;
}

Status ModelRunner::profile_run() {
  const int tokens = options_.max_num_batched_tokens;
  const ProfileStep profile = profile_step(tokens, options_.max_logit_rows, options_.block_size);
  const int blocks = profile.blocks;
  const Status scratch = device_->allocate_kv_cache(blocks, options_.block_size);
  if (!scratch.ok()) {
    return make_error("no memory for the start-up profile run of a {}-token step ({}): lower "
                      "--max-num-batched-tokens or free GPU memory",
                      tokens, scratch.error().message);
  }
  num_kv_blocks_ = blocks;
  std::vector<PassPiece> pieces;
  for (const RunnerSeq& seq : profile.seqs) {
    pieces.push_back(PassPiece{
        .seq = &seq, .begin = 0, .count = seq.num_new, .logits_all = seq.all_logits, .logits_last = !seq.all_logits});
  }
  // With expert parallelism and no EP group yet (ranks join theirs after loading), a group of
  // one: its dispatch sizes the workspace as a rank's own tokens would.
  std::unique_ptr<LocalGroup> solo;
  std::unique_ptr<Communicator> solo_ep;
  const ParallelComm comm = comm_;
  if (device_->shard().expert_parallel && comm_.ep == nullptr) {
    solo = std::make_unique<LocalGroup>(1);
    solo_ep = device_->device_communicator(solo->communicator(0));
    comm_.ep = solo_ep.get();
  }
  device_->synchronize();
  const size_t free_before = device_->memory()->free_bytes;
  run_pass(pieces, PassOutput{});
  device_->synchronize();
  comm_ = comm;
  profiled_outside_workspace_ = free_before - std::min(free_before, device_->memory()->free_bytes);
  MS_RETURN_IF_ERROR(device_->allocate_kv_cache(0, options_.block_size));
  num_kv_blocks_ = 0;
  spdlog::info("profiled the largest step ({} tokens, {} rows' logits): workspace peak {:.2f} of {:.2f} GiB, "
               "{:.2f} GiB allocated outside it",
               tokens, options_.max_logit_rows, device_->workspace_peak() / double(1 << 30),
               device_->workspace_capacity() / double(1 << 30), profiled_outside_workspace_ / double(1 << 30));
  return ok_status();
}

const ExpertLoad& ModelRunner::expert_load() const {
  device_->read_expert_load(expert_load_);
  return expert_load_;
}

void ModelRunner::reset_expert_load() {
  std::fill(expert_load_.counts.begin(), expert_load_.counts.end(), 0);
  std::fill(expert_load_.slot_counts.begin(), expert_load_.slot_counts.end(), 0);
  device_->reset_expert_load();
}

void ModelRunner::run_pass(std::span<const PassPiece> pieces, const PassOutput& out) {
  std::vector<StepPieceSource> sources;
  sources.reserve(pieces.size());
  int rows = 0;  // the device's workspace holds max_logit_rows of logits
  for (const PassPiece& p : pieces) rows += p.logit_rows();
  MS_CHECK(rows <= options_.max_logit_rows);
  for (const PassPiece& p : pieces) {
    sources.push_back(StepPieceSource{.tokens = p.seq->tokens,
                                      .block_table = p.seq->block_table,
                                      .begin = p.begin,
                                      .count = p.count,
                                      .logits_all = p.logits_all,
                                      .logits_last = p.logits_last});
  }
  const PackedStep step =
      pack_step(sources, options_.block_size, device_->query_tile_rows(), config().vocab_size, num_kv_blocks_);
  device_->run_pass(step, pieces, device_->load_counters(expert_load_), comm_, out);
}

Tensor ModelRunner::execute(std::span<const RunnerSeq> seqs) {
  const int vocab = config().vocab_size;
  // Every row without a choice is written by the passes.
  Tensor logits = Tensor::uninitialized(DType::kF32, Shape{logit_rows(seqs), vocab});
  picked_.clear();
  picked_logprobs_.clear();
  // Cut the step into forward passes of at most max_num_batched_tokens rows and max_logit_rows
  // logit rows, in order.
  std::vector<std::vector<PassPiece>> passes(1);
  int budget = options_.max_num_batched_tokens;
  int logit_budget = options_.max_logit_rows;
  for (const RunnerSeq& seq : seqs) {
    for (int done = 0; done < seq.num_new;) {
      // (a sampled row needs room for its row when its last token is in this piece)
      const bool needs_row = seq.all_logits || (seq.samples && seq.num_new - done <= budget);
      if (budget == 0 || (needs_row && logit_budget == 0)) {
        passes.emplace_back();
        budget = options_.max_num_batched_tokens;
        logit_budget = options_.max_logit_rows;
      }
      const int count = std::min({budget, seq.num_new - done, seq.all_logits ? logit_budget : budget});
      const bool last = done + count == seq.num_new;
      const bool logits_last = !seq.all_logits && seq.samples && last;
      passes.back().push_back(PassPiece{.seq = &seq,
                                        .begin = seq.num_computed + done,
                                        .count = count,
                                        .logits_all = seq.all_logits,
                                        .logits_last = logits_last,
                                        .choice = logits_last ? seq.choice : nullptr});
      budget -= count;
      logit_budget -= passes.back().back().logit_rows();
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
  for (size_t pass = 0; pass < num_passes; ++pass) {
    if (pass >= passes.size()) {
      device_->idle_pass(device_->load_counters(expert_load_), comm_);
      continue;
    }
    run_pass(passes[pass], PassOutput{.host_logits = dst, .tokens = &picked_, .logprobs = &picked_logprobs_});
    for (const PassPiece& piece : passes[pass]) dst += int64_t(piece.logit_rows()) * vocab;
  }
  return logits;
}

}  // namespace moeserve
