// CpuModel: a model (or one rank's shard of it) on the CPU — its weights packed for the one
// decoder loop (model/decoder_loop.h) in host memory, run by the CPU step backend. The CPU's
// RunnerDevice (runtime/cpu_runner.h) runs its passes, and EPLB swaps the experts in its slots
// between steps.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "loader/weight_source.h"
#include "model/decoder_loop.h"
#include "model/step_workspace.h"
#include "runtime/cpu_step_backend.h"
#include "runtime/expert_slots.h"

namespace moeserve {

struct ModelOptions {
  MlaMode mla_mode = MlaMode::kAuto;
  ShardSpec shard;  // this rank's part of the model (the whole model by default)
  // fp8: `--quantization fp8` (the Linear weights quantized to 128 × 128 fp8 blocks as they load;
  // an fp8 checkpoint's stay as published), and whether fp8 GEMMs emulate the GPU's FP8
  // activation quantization (off: exact dequantization, the reference).
  WeightPrecision precision;
  bool fp8_activations = false;
  bool kv_cache_fp8 = false;  // --kv-cache-dtype fp8 (CpuNumerics::kv_fp8)
};

class CpuModel final : public ExpertSlots {
 public:
  // The weights are copied (as bf16, or fp8 with their scales) out of `weights`, which need not
  // outlive the model.
  static Result<std::unique_ptr<CpuModel>> load(const ModelConfig& config, const WeightSource& weights,
                                                const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return options_.shard; }
  // Elements per token per layer in (this rank's) paged KV cache.
  int kv_entry_size() const;
  // Whether its KV cache holds e4m3 bytes (--kv-cache-dtype fp8) rather than float32.
  bool kv_cache_fp8() const { return options_.kv_cache_fp8; }
  size_t weight_bytes() const { return memory_.bytes(); }

  // Step workspace a pass of up to `tokens` rows needs.
  size_t workspace_bytes(int tokens) const { return step_workspace_bytes(config(), tokens, 0, false); }
  // The numerics its step backend emulates (--quantization fp8's activations, fp8 KV).
  CpuNumerics numerics() const {
    return CpuNumerics{
        .fp8_activations = options_.fp8_activations, .ue8m0 = config_.fp8_scale_ue8m0, .kv_fp8 = options_.kv_cache_fp8};
  }
  // One pass (DecoderLoop::forward) on `backend`: logits [inputs.logit_rows, vocab]. A sharded
  // model needs its rank's communicators, and every rank of its groups must run the pass (an idle
  // rank with no rows).
  void forward(StepBackend& backend, const StepInputs& inputs, const KvLayers& kv, float* logits,
               const LoadCounters& load, const ParallelComm& comm = {}) const {
    loop_->forward(backend, inputs, kv, logits, load, comm);
  }

  // Expert parallelism (EPLB): layer's slot map, and one slot's expert as bytes
  // ([2 Ie, hidden] gate/up then [hidden, Ie] down, bf16 or fp8, then fp8's scales likewise).
  const ExpertMap& expert_map(int layer) const override { return *weights_.layers[layer].moe.map; }
  size_t expert_bytes(int layer) const override;
  void copy_slot(int layer, int slot, std::byte* dst) const override;
  void set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                     std::span<const std::byte* const> slots) override;

 private:
  CpuModel() = default;

  ModelConfig config_;
  ModelOptions options_;
  CpuWeightMemory memory_;
  ModelWeights weights_;
  std::unique_ptr<DecoderLoop> loop_;
};

}  // namespace moeserve
