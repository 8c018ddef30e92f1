// CudaModel: the decoder on one GPU. It reads the same ModelConfig and checkpoint names as the
// CPU decoder (model/decoder_loop.h) and runs the same math — embed; per layer
// h += attn(norm(h)); h += ffn(norm(h)); logits = head(norm(h)) — but owns its weights in
// device memory (bf16, uploaded once; q/k/v and gate/up concatenated so each is one GEMM) and
// runs every op from kernels/cuda on one stream out of a per-step workspace arena.
//
// Why its own loop rather than the CPU layers behind ops.h: the CPU layers allocate host
// tensors, slice them with memcpy and build MoE row lists on the host; a GPU step wants fused
// kernels, one workspace, and an MoE split (router → permute → grouped experts → combine) that
// never waits for the host at decode sizes. Both loops share configs, weight names and the rope
// tables, and tests/gpu holds the GPU loop to the CPU reference op by op and model by model.
//
// Precision: activations and the KV cache are float32. The MoE router (always: top-k decisions
// are where rounding shows) and the GEMMs small_gemm runs (see kMaxSmallDenseRows) multiply
// float32 activations by bf16 weights on CUDA cores; the others run on tensor cores (mma_gemm,
// cuBLAS) with activations rounded to bf16 (PrefillPrecision::kBf16) or split into two bf16
// halves (kSplitBf16: twice the tensor-core work, float32-like results); prefill attention on
// tensor cores follows the same choice. MLA always runs in the weight-absorbed form.
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

namespace moeserve::cuda {

// A projection [out, in] bf16 (+ bias [out] bf16 or null) in device memory.
struct DeviceLinear {
  const uint16_t* weight = nullptr;
  const uint16_t* bias = nullptr;
  int out = 0;
  int in = 0;
};

// SwiGLU MLP: gate_up [2I, hidden] = [gate rows | up rows], down [hidden, I].
struct DeviceMlp {
  DeviceLinear gate_up;
  DeviceLinear down;
  int intermediate = 0;
};

struct DeviceGqa {
  DeviceLinear qkv;                  // [(Hq + 2 Hkv) D, hidden] = [q | k | v]
  DeviceLinear o;                    // [hidden, Hq D]
  const uint16_t* q_norm = nullptr;  // [D] (Qwen3) or null
  const uint16_t* k_norm = nullptr;
};

struct DeviceMla {
  DeviceLinear q;    // [H (dn + dr), hidden] when q_lora_rank == 0
  DeviceLinear q_a;  // [rq, hidden]
  const uint16_t* q_a_norm = nullptr;
  DeviceLinear q_b;                     // [H (dn + dr), rq]
  DeviceLinear kv_a;                    // [r + dr, hidden]
  const uint16_t* kv_a_norm = nullptr;  // [r]
  const float* kv_b = nullptr;          // [H (dn + dv), r] float32 (absorption)
  DeviceLinear o;                       // [hidden, H dv]
};

struct DeviceMoe {
  ops::RouterParams router_params;
  DeviceLinear router;                        // [E, hidden]
  const float* selection_bias = nullptr;      // [E] or null
  const uint16_t* experts_gate_up = nullptr;  // [E, 2 Ie, hidden]
  const uint16_t* experts_down = nullptr;     // [E, hidden, Ie]
  int num_experts = 0;
  int intermediate = 0;
  bool has_shared = false;
  DeviceMlp shared;
  DeviceLinear shared_gate;  // [1, hidden] or null weight
};

struct DeviceLayer {
  const uint16_t* input_norm = nullptr;  // [hidden]
  const uint16_t* post_norm = nullptr;   // [hidden]
  DeviceGqa gqa;
  DeviceMla mla;
  bool is_moe = false;
  DeviceMlp mlp;
  DeviceMoe moe;
};

// One step's inputs, already on the device (see CudaRunner::execute for how they are built).
// One sequence's rows of a step, as the host packed them (rows first_row .. first_row + count - 1
// at positions begin .. begin + count - 1, its block table at block_tables + table_offset).
struct StepPiece {
  int first_row = 0;
  int count = 0;
  int begin = 0;
  int table_offset = 0;
};

struct StepInputs {
  int tokens = 0;
  const int32_t* token_ids = nullptr;      // [T]
  const int32_t* positions = nullptr;      // [T]
  const int32_t* table_offsets = nullptr;  // [T] start of the row's block table in block_tables
  const int32_t* block_tables = nullptr;   // packed block tables of the step's sequences
  const int32_t* slots = nullptr;          // [T] cache slot of the row's own entry
  int logit_rows = 0;
  const int32_t* logit_row_ids = nullptr;  // [logit_rows]
  int num_query_tiles = 0;
  int query_tile_rows = 0;               // the most rows a query tile holds
  const int32_t* query_tiles = nullptr;  // [num_query_tiles × 2] (first row, rows), see paged_attention_prefill
  // Host copy of the pieces (empty in a captured decode graph): MLA prefill runs per piece.
  std::span<const StepPiece> pieces;
};

// MLA pieces (one sequence's rows of a step) of at least this many rows run attention in the
// plain form (mla_prefill_attention: GEMMs over keys and values expanded from the latent cache)
// when the step's pieces are known; shorter ones (decode rows) and captured graphs absorbed.
constexpr int kMinMlaPrefillRows = 16;
// Score tile of the plain MLA prefill: heads × queries × keys floats (256 MiB).
constexpr size_t kMlaScoreFloats = size_t{64} << 20;

// Per-layer KV memory: cache[layer] is [num_blocks × block_size, entry_size] float32.
struct DeviceKv {
  std::vector<float*> layers;
  int block_size = 0;
  int entry_size = 0;
};

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
constexpr int kMaxSmallGroupedRows = 4;
constexpr int kMaxMmaDenseRows = 32;
constexpr int kMaxMmaRows = 256;

// Device time per op kind (one cudaEvent pair per op launch group) over the steps run while it
// is attached to a runner: what `bench latency` reports per kernel. Not for production steps.
class OpProfile {
 public:
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

class CudaModel {
 public:
  // weights null: random bf16 weights generated on the device from `seed` (--load-format dummy).
  static Result<std::unique_ptr<CudaModel>> load(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                                 const GpuExec& exec,
                                                 PrefillPrecision precision = PrefillPrecision::kBf16);

  const ModelConfig& config() const { return config_; }
  int kv_entry_size() const;
  size_t weight_bytes() const { return weight_bytes_; }
  // Workspace a step of up to max_tokens rows (and as many logit rows) needs.
  size_t workspace_bytes(int max_tokens) const;

  // Whether the MoE experts of a step of `tokens` rows stream their weights on the device
  // (kMaxMmaRows) instead of running per expert through cuBLAS after copying the row counts to
  // the host; such a step queues device work only, so a CUDA graph can capture it.
  bool experts_stream(int tokens) const;
  bool capturable(int tokens) const { return experts_stream(tokens); }

  // Queues one step; logits [inputs.logit_rows, vocab] float32 land in `logits` (device).
  // expert_load [num_layers × E] int64 on the device accumulates routed rows (may be null).
  void forward(const GpuExec& exec, DeviceArena& arena, const StepInputs& inputs, const DeviceKv& kv, float* logits,
               int64_t* expert_load, OpProfile* profile = nullptr) const;

 private:
  friend class WeightUploader;
  struct Act {
    const float* f32 = nullptr;
    const uint16_t* bf16 = nullptr;  // the same values rounded, when the caller has them
  };
  struct Step {
    const GpuExec& exec;
    DeviceArena& arena;
    const StepInputs& in;
    const DeviceKv& kv;
    int64_t* expert_load;
    OpProfile* profile;
  };
  // Grouped experts (offsets on the device): small_gemm up to kMaxSmallGroupedRows, mma_gemm beyond.
  void grouped_gemm(Step& step, const GemmArgs& args) const;
  // mma_gemm in the configured precision, K split over a workspace from the arena when it pays.
  void tensor_core_gemm(Step& step, const GemmArgs& args) const;
  // small_gemm (float32 activations), K split over a workspace from the arena when it pays.
  void cuda_core_gemm(Step& step, const GemmArgs& args) const;
  // The same, its split-K partial sums left for the consumer (small_gemm_unsummed); the
  // workspace stays allocated until the caller rewinds the arena.
  SplitSums cuda_core_gemm_unsummed(Step& step, const GemmArgs& args) const;
  void linear(Step& step, Act x, int rows, const DeviceLinear& w, float* out) const;
  // linear, with one-row bias-free projections left as split-K partial sums (the residual norm after
  // attention adds them up).
  SplitSums linear_unsummed(Step& step, Act x, int rows, const DeviceLinear& w, float* out) const;
  // cuBLAS GEMM in the configured prefill precision: out [rows, n] = x [rows, k] · w [n, k]ᵀ (+ bias).
  void gemm(Step& step, Act x, int rows, const uint16_t* w, const uint16_t* bias, int n, int k, float* out) const;
  void mlp(Step& step, Act x, int rows, const DeviceMlp& w, float* out) const;
  // Attention blocks: their output projection into out, or left as partial sums (linear_unsummed).
  SplitSums gqa(Step& step, int layer_idx, Act x, float* out) const;
  SplitSums mla(Step& step, int layer_idx, Act x, float* out) const;
  // Whether this step's MLA attention runs in the plain form (mla_prefill_attention).
  bool mla_plain_prefill(const Step& step, const MlaDims& dims) const;
  // then (or null): the residual add + RMSNorm that follows the block, fused into its combine
  // (then->x is the residual; out is unused).
  void moe(Step& step, int layer_idx, Act x, float* out, const RmsNormArgs* then) const;
  // y, or (small_gemm's split K at up to kMaxSmallGroupedRows tokens) its partial sums for the combine.
  SplitSums moe_experts_streaming(Step& step, const DeviceMoe& w, const float* x, const int32_t* x_rows,
                                  const int32_t* offsets, int tokens, float* y) const;
  void moe_experts_large(Step& step, const DeviceMoe& w, const float* x, const int32_t* source_rows,
                         const int32_t* offsets, int entries, float* y) const;

  ModelConfig config_;
  PrefillPrecision precision_ = PrefillPrecision::kBf16;
  std::vector<DeviceBuffer> buffers_;  // every weight allocation
  size_t weight_bytes_ = 0;
  const uint16_t* embed_ = nullptr;       // [vocab, hidden]
  const uint16_t* final_norm_ = nullptr;  // [hidden]
  DeviceLinear lm_head_;                  // [vocab, hidden]
  const float* inv_freq_ = nullptr;       // [rotary_dim / 2]
  int rope_half_ = 0;
  float rope_attention_factor_ = 1.0f;
  bool rope_interleaved_ = false;
  std::vector<DeviceLayer> layers_;
};

}  // namespace moeserve::cuda
