// CudaModel: the model on one GPU — its weights in device memory (model/model_weights: the
// weight plan as bf16, q/k/v and gate/up stacked so each is one GEMM) and the one decoder loop
// (model/decoder_loop.h) run by the CUDA step backend (cuda_step_backend.h), every op from
// kernels/cuda on one stream out of a per-step workspace arena.
//
// Precision: activations and the KV cache are float32. The MoE router (always: top-k decisions
// are where rounding shows) and the GEMMs small_gemm runs (see kMaxSmallDenseRows) multiply
// float32 activations by bf16 weights on CUDA cores; the others run on tensor cores (mma_gemm,
// cuBLAS) with activations rounded to bf16 (PrefillPrecision::kBf16) or split into two bf16
// halves (kSplitBf16: twice the tensor-core work, float32-like results); prefill attention on
// tensor cores follows the same choice. MLA runs the plain form for prefill pieces (when the
// step's pieces are known and the score tile fits) and the absorbed form otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "device/cuda/device_memory.h"
#include "kernels/ops.h"
#include "loader/weight_source.h"
#include "model/config.h"
#include "model/decoder_loop.h"
#include "model/step_model.h"
#include "model/step_workspace.h"
#include "runtime/expert_slots.h"

namespace moeserve::cuda {

enum class PrefillPrecision { kBf16, kSplitBf16 };
// As `bench latency --prefill-precision` spells it (and the result files record it).
inline const char* prefill_precision_name(PrefillPrecision p) {
  return p == PrefillPrecision::kBf16 ? "bf16" : "split-bf16";
}

// Which kernel a GEMM runs on, measured on an H200 (bench latency --device cuda, "kernels" in
// bench/results/2026-12-02-h200-mixtral-8x7b-8l*.json, Mixtral's 6144×4096 qkv). Dense
// projections: small_gemm with split K for one row (kMaxSmallDenseRows: 2.9 TB/s, float32
// activations; mma_gemm split K 2.5, cuBLAS bf16 3.0 but bf16 activations), mma_gemm with split K
// up to kMaxMmaDenseRows rows (2.7 TB/s at 2-8 rows, 2.2 at 16; small_gemm: 1.7 at 2, 0.7 at 8;
// at 32, qkv + o of a batch-32 step took 0.51 ms against cuBLAS's 0.62), cuBLAS beyond (split
// bf16, two GEMMs: 1.3 TB/s at 64 rows, where mma_gemm's 16-row tiles re-read the weights from L2
// and fall to 1.1). MLPs of dense layers: small_gemm for one row, cuBLAS beyond. Grouped
// experts: small_gemm up to kMaxSmallGroupedRows tokens (gate/up 3.9-4.1 TB/s, down with split K
// 3.4-3.8), mma_gemm up to kMaxMmaRows (gate/up 3.8-4.0, down with split K 3.1-3.3 TB/s from 8 to
// 64 tokens; small_gemm falls to 3.4 and 2.3 at 8), then per-expert cuBLAS, which needs the row
// counts on the host.
constexpr int kMaxSmallDenseRows = 1;
// FP8 experts too (H200, Mixtral's shape cut to 8 layers, -q fp8: batch 1 decoded 580 tok/s, 533
// with FP8 experts of 1-4 tokens on mma_gemm).
constexpr int kMaxSmallGroupedRows = 4;
// MXFP4 experts (GPT-OSS) leave small_gemm above 2 tokens: decoding each weight on CUDA cores
// makes it instruction-bound (H100, gpt-oss-20b's experts at 4 tokens: gate/up 234 µs and down
// 116 µs there, 114 and 59 µs on tensor cores; at 2 tokens 73 + 38 against 76 + 31).
constexpr int kMaxSmallMxfp4GroupedRows = 2;
constexpr int kMaxMmaDenseRows = 32;
// kMaxMmaRows and kMlaScoreFloats: model/step_workspace.h, where the arena bound reads them.

// Whether the MoE experts of a step of `tokens` rows stream their weights on the device
// (kMaxMmaRows) instead of running per expert through cuBLAS after copying the row counts to
// the host; such a step queues device work only, so a CUDA graph can capture it.
bool experts_stream(const ModelConfig& config, int tokens);

// Device time per op kind (one cudaEvent pair per op launch group) over the steps run while it
// is attached to a runner: what `bench latency` reports per kernel. Not for production steps.
class OpProfile {
 public:
  // Spans may nest (end() closes the innermost open one), but a nested span's time is also in its
  // parent's, so the decoder loop keeps its spans apart (bench's shares add up to the step).
  void begin(const char* name, void* stream);
  void end(void* stream);
  // (name, seconds summed over its spans) in first-seen order; waits for the events.
  std::vector<std::pair<std::string, double>> totals() const;

 private:
  struct Span {
    std::string name;
    std::unique_ptr<EventTimer> timer;
  };
  std::vector<Span> spans_;
  std::vector<size_t> open_;  // spans_ indices begun and not yet ended, innermost last
};

// Times the ops queued during its lifetime under `name` when a profile is attached.
class ProfileScope {
 public:
  ProfileScope(OpProfile* profile, void* stream, const char* name) : profile_(profile), stream_(stream) {
    if (profile_ != nullptr) profile_->begin(name, stream_);
  }
  ~ProfileScope() {
    if (profile_ != nullptr) profile_->end(stream_);
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  OpProfile* profile_;
  void* stream_;
};

class CudaModel final : public ExpertSlots {
 public:
  // weights null: random bf16 weights generated on the device from `seed` (--load-format dummy;
  // block-scaled FP8 where weight_precision quantizes). shard: the rank's part of the model
  // (model/parallel.h), all of it by default.
  static Result<std::unique_ptr<CudaModel>> load(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                                 const GpuExec& exec,
                                                 PrefillPrecision precision = PrefillPrecision::kBf16,
                                                 const ShardSpec& shard = {},
                                                 const WeightPrecision& weight_precision = {});

  const ModelConfig& config() const { return config_; }
  int kv_entry_size() const;
  size_t weight_bytes() const { return weight_bytes_; }
  // Workspace a step of up to max_tokens rows and max_logit_rows logit rows (< 0: as many as rows)
  // needs.
  size_t workspace_bytes(int max_tokens, int max_logit_rows = -1) const;
  bool capturable(int tokens) const { return experts_stream(config_, tokens); }

  // EPLB on a CUDA rank: the slots' experts copied through the host on the load stream.
  const ExpertMap& expert_map(int layer) const override { return *weights_.layers[layer].moe.map; }
  size_t expert_bytes(int layer) const override;
  void copy_slot(int layer, int slot, std::byte* dst) const override;
  void set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                     std::span<const std::byte* const> slots) override;

  // Queues one step; logits [inputs.logit_rows, vocab] float32 land in `logits` (device).
  // load: the routed rows to add to (experts [num_layers × E] int64 on the device; slots, with
  // expert parallelism, on the host). comm: the rank's groups (DecoderLoop::forward), none on one
  // rank.
  void forward(const GpuExec& exec, StepArena& arena, const StepInputs& inputs, const KvLayers& kv, float* logits,
               const LoadCounters& load, OpProfile* profile = nullptr, const ParallelComm& comm = {}) const;

 private:
  friend class CudaWeightMemory;
  ModelConfig config_;
  ShardSpec shard_;
  GpuExec exec_;  // the stream it loaded on (its runner's)
  PrefillPrecision precision_ = PrefillPrecision::kBf16;
  std::vector<DeviceBuffer> buffers_;  // every weight allocation
  size_t weight_bytes_ = 0;
  ModelWeights weights_;
  std::unique_ptr<DecoderLoop> loop_;
};

}  // namespace moeserve::cuda
