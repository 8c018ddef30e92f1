#include "runtime/cpu_runner.h"

#include <algorithm>
#include <limits>

namespace moeserve {

CpuDevice::CpuDevice(std::unique_ptr<CpuModel> model, ExecContext exec, std::unique_ptr<ThreadPool> pool)
    : owned_(std::move(model)), pool_(std::move(pool)), model_(*owned_), exec_(exec) {}

CpuDevice::CpuDevice(const CpuModel& model, ExecContext exec) : model_(model), exec_(exec) {}

ExpertSlots& CpuDevice::expert_slots() {
  MS_CHECK_MSG(owned_ != nullptr, "a borrowed CPU model is read-only");
  return *owned_;
}

Status CpuDevice::allocate_kv_cache(int blocks, int block_size) {
  kv_.reset();
  const bool fp8 = model_.kv_cache_fp8();
  kv_layers_ = KvLayers{.block_size = block_size, .entry_size = model_.kv_entry_size(), .fp8 = fp8};
  if (blocks == 0) return ok_status();
  kv_ = std::make_unique<KvMemory>(KvShape{.num_layers = model_.config().num_layers,
                                           .num_blocks = blocks,
                                           .block_size = block_size,
                                           .entry_size = model_.kv_entry_size(),
                                           .element = fp8 ? DType::kF8E4M3 : DType::kF32});
  // (an e4m3 layer's bytes go to the ops through the float pointer, as KvLayers::fp8 says)
  for (int l = 0; l < model_.config().num_layers; ++l) {
    kv_layers_.layers.push_back(static_cast<float*>(kv_->layer_data(l)));
  }
  return ok_status();
}

CpuStepBackend& CpuDevice::backend(int tokens) {
  tokens = std::max(tokens, 1);
  if (backend_ == nullptr || backend_tokens_ < tokens) {
    backend_tokens_ = tokens;
    workspace_bytes_ = model_.workspace_bytes(tokens);
    backend_ = std::make_unique<CpuStepBackend>(exec_, workspace_bytes_, model_.numerics());
  }
  return *backend_;
}

void CpuDevice::run_pass(const PackedStep& step, std::span<const PassPiece> pieces, const LoadCounters& load,
                         const ParallelComm& comm, const PassOutput& out) {
  const int vocab = model_.config().vocab_size;
  // The logits land in place; the profile run (no output) has a scratch buffer.
  std::vector<float> scratch;
  float* logits = out.host_logits;
  if (logits == nullptr) {
    scratch.resize(size_t(step.logit_rows) * vocab);
    logits = scratch.data();
  }
  model_.forward(backend(step.tokens), step.inputs_at(step.words.data()), kv_layers_, logits, load, comm);
  if (out.host_logits == nullptr) return;
  row_choices_.clear();
  for (const PassPiece& p : pieces) {
    for (int r = 0; r < p.logit_rows(); ++r) row_choices_.push_back(r == p.logit_rows() - 1 ? p.choice : nullptr);
  }
  picker_.pick(exec_.pool, row_choices_, logits, vocab);
  out.tokens->insert(out.tokens->end(), picker_.tokens().begin(), picker_.tokens().end());
  out.logprobs->insert(out.logprobs->end(), picker_.logprobs().begin(), picker_.logprobs().end());
}

void CpuDevice::idle_pass(const LoadCounters& load, const ParallelComm& comm) {
  model_.forward(backend(0), StepInputs{}, kv_layers_, nullptr, load, comm);
}

ModelRunnerOptions cpu_runner_options(int num_kv_blocks, int block_size) {
  return ModelRunnerOptions{.num_kv_blocks = num_kv_blocks,
                            .block_size = block_size,
                            .max_num_batched_tokens = std::numeric_limits<int>::max()};
}

Result<std::unique_ptr<Runner>> make_cpu_runner(LoadedModel model, const CpuRunnerOptions& options) {
  if (!model.model) return make_error("make_cpu_runner: no model");
  if (options.block_size <= 0) return make_error("--block-size must be positive, got {}", options.block_size);
  if (options.num_kv_blocks <= 0) {
    return make_error("the KV cache budget holds no block of {} tokens: raise --kv-cache-memory", options.block_size);
  }
  auto pool = std::make_unique<ThreadPool>(options.threads);
  const ExecContext exec{pool.get()};
  auto device = std::make_unique<CpuDevice>(std::move(model.model), exec, std::move(pool));
  MS_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner,
                      ModelRunner::create(std::move(device),
                                          cpu_runner_options(options.num_kv_blocks, options.block_size)));
  return std::unique_ptr<Runner>(std::move(runner));
}

}  // namespace moeserve
