// CpuModel: a model (or one rank's shard of it) on the CPU — its weights packed for the one
// decoder loop (model/decoder_loop.h) in host memory, run by the CPU step backend. It serves the
// CPU runners (ModelRunner, RankGroup) over their sequences and paged KvMemory, and lets EPLB swap
// the experts in its slots between steps.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kvcache/kv_memory.h"
#include "loader/weight_source.h"
#include "model/decoder_loop.h"
#include "runtime/runner_seq.h"
#include "runtime/cpu_step_backend.h"
#include "runtime/expert_slots.h"
#include "runtime/step_packing.h"

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
  // Floats per token per layer in (this rank's) paged KV cache.
  int kv_entry_size() const;
  size_t weight_bytes() const { return memory_.bytes(); }

  // Runs one step of `seqs`' new tokens. Their block tables must cover every position.
  // logits [logit_rows(seqs), vocab]; load (or null) gets the step's routing counts. A sharded
  // model needs its rank's communicators, and every rank of its groups must run the step (an
  // idle rank with no sequences).
  void forward(ExecContext& exec, std::span<const RunnerSeq> seqs, const KvMemory& kv, const TensorView& logits,
               ExpertLoad* load = nullptr, const ParallelComm& comm = {}) const;

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
  // The backend of the last forward (its arena grows with the largest step so far).
  mutable std::unique_ptr<CpuStepBackend> backend_;
  mutable ExecContext* backend_exec_ = nullptr;
  mutable int backend_tokens_ = 0;
};

}  // namespace moeserve
