// The backend-neutral parts of a decoder step (issue 19's one loop, model/decoder_loop.h): the
// model's weights as a backend holds them, one step's inputs, the paged KV memory, a bump arena
// for the step's buffers, and the StepBackend interface the loop runs its ops through.
//
// Every pointer here addresses the backend's memory (host memory on the CPU, device memory on
// CUDA). Weights are bf16 (uint16_t bits) or, where the backend holds them, block-scaled fp8 or
// float32 (WeightMemory::holds_fp8, holds_f32); each packing group of the weight plan is stacked into one matrix (q/k/v, gate/up, the routed
// experts side by side); MLA's kv_b and the router's selection bias stay float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/step_arena.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/expert_map.h"

namespace moeserve {

class ShardedWeights;
class WeightPlan;

// A weight that is not a matrix (a norm's weight, a bias, the embedding table): bf16, or float32
// on a backend that holds float32 (WeightMemory::holds_f32); data null when the model has none.
struct WeightVector {
  const void* data = nullptr;
  DType dtype = DType::kBF16;  // kBF16 or kF32

  bool present() const { return data != nullptr; }
  // The data for a bf16-only kernel (null stays null).
  const uint16_t* bf16() const {
    MS_CHECK_MSG(data == nullptr || dtype == DType::kBF16, "a float32 weight reached a bf16-only kernel");
    return static_cast<const uint16_t*>(data);
  }
  const float* f32() const {
    MS_CHECK(dtype == DType::kF32);
    return static_cast<const float*>(data);
  }
  // The data as the op argument of its dtype, null for the other (ops' `weight` / `weight_f32` pairs).
  const uint16_t* if_bf16() const { return dtype == DType::kBF16 ? static_cast<const uint16_t*>(data) : nullptr; }
  const float* if_f32() const { return dtype == DType::kF32 ? static_cast<const float*>(data) : nullptr; }
};

// A projection [out, in] (+ bias [out] or null). Its weight is bf16, or on a backend that holds
// fp8 (WeightMemory::holds_fp8) block-scaled e4m3 as ops::Fp8Scales describes, or on one that
// holds float32 (WeightMemory::holds_f32) float32, or (routed experts on a backend that holds
// MXFP4, WeightMemory::holds_mxfp4) MXFP4 as GPT-OSS publishes its experts: dtype kU8, weight
// [out, in / 2] bytes of two e2m1 values (the even column in the low nibble) and mx_scale
// [out, in / 32] e8m0 exponents, w[n, k] = e2m1 · 2^(mx_scale[n, k / 32] − 127).
struct Projection {
  const void* weight = nullptr;  // [out, in] of dtype
  WeightVector bias;             // [out] or null
  int out = 0;
  int in = 0;
  DType dtype = DType::kBF16;    // kBF16, kF8E4M3, kF32 or kU8 (MXFP4)
  const float* scale = nullptr;  // kF8E4M3: [out, scale_cols()] float32
  int scale_block = 0;           // kF8E4M3: columns per scale
  int scale_offset = 0;          // kF8E4M3: column 0's place in its scale block
  // kF8E4M3: each aligned block of 128 rows shares its scales (a 128 × 128 block-scaled matrix
  // whose row blocks this one's start on), so FP8 tensor cores may take them per block.
  bool scale_row_blocks = false;
  const uint8_t* mx_scale = nullptr;  // MXFP4: [out, in / 32] e8m0
  static constexpr int kMxBlock = 32;  // MXFP4: columns per e8m0 scale

  bool mxfp4() const { return dtype == DType::kU8; }

  const uint16_t* bf16() const {
    MS_CHECK_MSG(dtype == DType::kBF16, "an fp8 or float32 projection reached a bf16-only kernel");
    return static_cast<const uint16_t*>(weight);
  }
  const float* f32() const {
    MS_CHECK(dtype == DType::kF32);
    return static_cast<const float*>(weight);
  }
  const uint8_t* fp8() const {
    MS_CHECK(dtype == DType::kF8E4M3);
    return static_cast<const uint8_t*>(weight);
  }
  const uint8_t* mxfp4_blocks() const {
    MS_CHECK(mxfp4());
    return static_cast<const uint8_t*>(weight);
  }
  int64_t scale_cols() const { return scale_block > 0 ? (scale_offset + in + scale_block - 1) / scale_block : 0; }
  // Bytes of the weight, and of its scales.
  size_t weight_bytes() const {
    return mxfp4() ? static_cast<size_t>(out) * in / 2 : static_cast<size_t>(out) * in * dtype_size(dtype);
  }
  size_t scale_bytes() const {
    return mxfp4() ? static_cast<size_t>(out) * (in / kMxBlock)
                   : static_cast<size_t>(out) * scale_cols() * sizeof(float);
  }
  // Matrix i of several stored back to back from this one (weights, scales and biases alike).
  Projection stacked_at(int64_t i) const {
    Projection at = *this;
    at.weight = static_cast<const char*>(weight) + i * weight_bytes();
    if (scale != nullptr) at.scale = scale + i * out * scale_cols();
    if (mx_scale != nullptr) at.mx_scale = mx_scale + i * scale_bytes();
    if (bias.present()) at.bias.data = static_cast<const char*>(bias.data) + i * out * dtype_size(bias.dtype);
    return at;
  }
};

// SwiGLU MLP: gate_up [2I, hidden] = [gate rows | up rows], down [hidden, I].
struct MlpWeights {
  Projection gate_up;
  Projection down;
  int intermediate = 0;
};

struct GqaWeights {
  Projection qkv;                 // [(Hq + 2 Hkv) D, hidden] = [q | k | v]
  Projection o;                   // [hidden, Hq D]
  WeightVector q_norm;            // [D] (Qwen3) or null
  WeightVector k_norm;
  const float* sinks = nullptr;  // [Hq on this rank] float32 (GPT-OSS) or null
};

struct MlaWeights {
  Projection q;    // [H (dn + dr), hidden] when q_lora_rank == 0
  Projection q_a;  // [rq, hidden]
  WeightVector q_a_norm;             // [rq]
  Projection q_b;                    // [H (dn + dr), rq]
  Projection kv_a;                   // [r + dr, hidden]; V3.2: [r + dr + Di + Hi, hidden] (+ wk, weights_proj)
  WeightVector kv_a_norm;            // [r]
  const float* kv_b = nullptr;          // [H (dn + dv), r] float32 (absorption)
  Projection o;                      // [hidden, H dv]
  // DeepSeek-V3.2's indexer (IndexerConfig: Hi heads of Di): its queries from the q latent and
  // the LayerNorm of its key; null weight without one.
  Projection indexer_q;                     // [Hi Di, rq]
  const float* indexer_k_norm = nullptr;    // [Di] float32
  const float* indexer_k_bias = nullptr;    // [Di] float32
};

struct MoeWeights {
  ops::RouterParams router_params;
  Projection router;                          // [E, hidden]
  const float* selection_bias = nullptr;      // [E] or null
  // The experts back to back: slot s's matrices are experts_gate_up.stacked_at(s) ([2 Ie, hidden],
  // its gate rows then its up rows) and experts_down.stacked_at(s) ([hidden, Ie]), with their
  // float32 biases where the experts have them (GPT-OSS: [2 Ie] likewise, and [hidden] — on TP
  // rank 0 only, as the all-reduce adds the row-parallel down projection's bias once).
  ops::GluParams glu;  // the experts' activation
  Projection experts_gate_up;
  Projection experts_down;
  int num_experts = 0;  // E, the logical experts the router scores
  // S: the experts held — every expert (its TP slice), or with expert parallelism this rank's
  // physical slots in slot order (map: which logical expert each slot holds; null without EP).
  int num_slots = 0;
  std::shared_ptr<const ExpertMap> map;
  int intermediate = 0;  // Ie on this rank
  bool has_shared = false;
  MlpWeights shared;
  Projection shared_gate;  // [1, hidden] or null weight
};

struct LayerWeights {
  WeightVector input_norm;  // [hidden]
  WeightVector post_norm;   // [hidden]
  GqaWeights gqa;
  MlaWeights mla;
  ops::KvScales kv_scales;  // the checkpoint's KV cache scales (vLLM's k_scale / v_scale), {1, 1} if none
  bool is_moe = false;
  MlpWeights mlp;
  MoeWeights moe;
};

struct ModelWeights {
  WeightVector embed;                 // [vocab, hidden]
  WeightVector final_norm;            // [hidden]
  Projection lm_head;                 // [vocab, hidden] (the embedding when tied)
  const float* inv_freq = nullptr;       // [rotary_dim / 2]
  int rope_half = 0;
  float rope_attention_factor = 1.0f;
  bool rope_interleaved = false;
  std::vector<LayerWeights> layers;
};

// The router's parameters for a MoE config (every backend routes with these).
ops::RouterParams router_params(const MoeConfig& moe);

// Where a backend keeps the weights: allocations that live as long as the model, and copies from
// host memory into them.
class WeightMemory {
 public:
  virtual ~WeightMemory() = default;
  virtual Result<void*> allocate(size_t bytes) = 0;
  // dst (from allocate) ← host bytes; host may be reused once the call returns.
  virtual void write(void* dst, const void* host, size_t bytes) = 0;
  // dst [count] of dtype (kBF16 or kF32) ← normal(0, stddev) from a counter-based hash of
  // (seed, index), or `constant` where stddev is 0 (--load-format dummy made where the weights live);
  // kU8 (MXFP4 blocks and scales): uniform random bytes, or `constant` where stddev is 0;
  // kF8E4M3: random e4m3 codes of |value| < 2.
  virtual Status fill_random(void* dst, DType dtype, int64_t count, uint64_t seed, float stddev, float constant) {
    return make_error("random weights are made by a WeightSource on this backend (loader/dummy_weights.h)");
  }
  // Whether the backend computes with block-scaled fp8 weights; otherwise the loader dequantizes
  // an fp8 checkpoint to bf16.
  virtual bool holds_fp8() const { return false; }
  // Whether the backend computes with float32 weights; otherwise the loader rounds a float32
  // checkpoint to bf16.
  virtual bool holds_f32() const { return false; }
  // Whether the backend computes with MXFP4 routed experts (Projection::mxfp4); otherwise the
  // loader dequantizes a checkpoint's MXFP4 experts exactly to bf16.
  virtual bool holds_mxfp4() const { return false; }
};

// How the loader stores the plan's quantizable (Linear) weights.
struct WeightPrecision {
  // Quantize bf16/f32 checkpoint weights to fp8 while they load (`--quantization fp8`; dummy
  // weights of an fp8 config), on a backend that holds fp8: in the config's fp8 blocks, or
  // 128 × 128.
  bool quantize_fp8 = false;
  // What a backend that holds float32 (WeightMemory::holds_f32) does with the checkpoint's F32
  // tensors (--dtype): kAuto keeps them float32 when config.json's torch_dtype is float32,
  // kKeep (float32) keeps them whatever it says, kRound (bfloat16, float16) rounds them to bf16.
  // A stacked group with one F32 part is held float32 (its bf16 parts widened exactly).
  enum class Float32 { kAuto, kKeep, kRound };
  Float32 f32 = Float32::kAuto;

  // Whether F32 tensors of a checkpoint whose torch_dtype is `checkpoint` stay float32.
  bool keeps_f32(DType checkpoint) const {
    return f32 == Float32::kKeep || (f32 == Float32::kAuto && checkpoint == DType::kF32);
  }
};

// This rank's part of every tensor of the weight plan (`weights`: the checkpoint read through the
// plan; `shard`: the rank's TP part and, with expert parallelism, its expert slots), converted to
// bf16 (kv_b and the selection bias to float32; fp8 weights kept as fp8 where memory holds fp8,
// dequantized otherwise; F32 weights kept as float32 where memory holds float32 and precision
// keeps them) and packed as ModelWeights describes, into `memory`.
Result<ModelWeights> load_model_weights(const ModelConfig& config, const ShardedWeights& weights,
                                        const ShardSpec& shard, WeightMemory& memory,
                                        const WeightPrecision& precision = {});
// The same shapes with random weights made by memory.fill_random (a routed expert's are the same
// on every rank that holds it; a TP shard's are its own, not a slice of one rank's).
Result<ModelWeights> load_random_model_weights(const ModelConfig& config, const WeightPlan& plan, uint64_t seed,
                                               WeightMemory& memory, const ShardSpec& shard = {},
                                               const WeightPrecision& precision = {});

// One sequence's rows of a step, as the host packed them (rows first_row .. first_row + count - 1
// at positions begin .. begin + count - 1, its block table at block_tables + table_offset).
struct StepPiece {
  int first_row = 0;
  int count = 0;
  int begin = 0;
  int table_offset = 0;
};

// One step's inputs in the backend's memory (pieces: on the host).
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

// Per-layer KV memory: layers[l] is [num_blocks × block_size, entry_size] float32, or e4m3 bytes
// when fp8 (--kv-cache-dtype fp8, both backends; the ops' cache_fp8).
struct KvLayers {
  std::vector<float*> layers;
  int block_size = 0;
  int entry_size = 0;
  bool fp8 = false;
};


// An activation as float32, with its bf16 rounding when the caller already has it.
struct Act {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};

// The ops a decoder step runs, on one backend. The elementwise and attention ops are the step
// ops of kernels/ops.h; the GEMM-shaped ones are whole projections, so that each backend
// chooses its kernels and precision (CUDA: CUDA-core, tensor-core or cuBLAS GEMMs by row count).
class StepBackend {
 public:
  virtual ~StepBackend() = default;
  virtual StepArena& arena() = 0;

  virtual void embedding(const WeightVector& table, int hidden, const int32_t* ids, int tokens, float* out) = 0;
  virtual void rms_norm(const ops::RmsNormArgs& args) = 0;
  virtual void rope(const ops::RopeArgs& args) = 0;
  // tiles: the step whose rows args' rows are (a backend may use its query tiles), or null.
  virtual void paged_attention(const ops::AttentionArgs& args, const StepInputs* tiles) = 0;
  virtual void mla_absorb_q(const ops::MlaDims& dims, const float* q, const float* kv_b, float* q_absorbed) = 0;
  virtual void mla_project_v(const ops::MlaDims& dims, const float* latent, const float* kv_b, float* out) = 0;
  virtual void mla_prefill_attention(const ops::MlaPrefillArgs& args) = 0;
  // DeepSeek-V3.2's indexer: the LayerNorm of its key and its top-k selection.
  virtual void layer_norm(const ops::LayerNormArgs& args) = 0;
  virtual void indexer_topk(const ops::IndexerArgs& args) = 0;
  // The plain MLA prefill's workspace and score tile for a piece (0 and 1: none needed).
  virtual size_t mla_prefill_workspace_floats(const ops::MlaDims& dims, int ctx, int query_tile) = 0;
  virtual int mla_prefill_query_tile(const ops::MlaDims& dims, int count, int ctx) = 0;
  virtual void route(const float* logits, const float* selection_bias, int tokens, int experts,
                     const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) = 0;
  virtual void moe_permute(const ops::MoePermuteArgs& args) = 0;  // args.workspace: set by the backend
  virtual void gather_rows(const float* x, int width, const int32_t* rows, int count, float* out_f32,
                           uint16_t* out_bf16) = 0;
  virtual void scale_expert_inputs(const ops::ScaleExpertInputsArgs& args) = 0;
  virtual void moe_combine(const ops::MoeCombineArgs& args) = 0;

  // out [rows, w.out] = x · w.weightᵀ (+ bias).
  virtual void linear(Act x, int rows, const Projection& w, float* out) = 0;
  // linear, or (where the backend splits K) its partial sums, left for the consumer to add.
  virtual ops::SplitSums linear_unsummed(Act x, int rows, const Projection& w, float* out) = 0;
  // out [rows, hidden] = down(silu(gate(x)) · up(x)).
  virtual void mlp(Act x, int rows, const MlpWeights& w, float* out) = 0;
  // The router's logits [rows, E] (in float32: rounding here flips top-k choices).
  virtual void router_logits(Act x, int rows, const Projection& router, float* logits) = 0;
  // The routed experts' SwiGLU MLPs: entry i (permuted order, rows offsets[s] .. offsets[s+1] for
  // slot s < w.num_slots; rows past offsets[w.num_slots] are left alone) reads x[source_rows[i]]
  // ([tokens, hidden]); y [tokens × top_k, hidden] in permuted order, or its split-K partial sums.
  virtual ops::SplitSums routed_experts(const MoeWeights& w, const float* x, const int32_t* source_rows,
                                        const int32_t* offsets, int tokens, float* y) = 0;

  // dst [bytes] = 0.
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // host [bytes] ← src (step memory), once the work queued before it is done; dst (step memory)
  // ← host [bytes], done when it returns (the host buffer may go).
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;

  // Whether GEMMs over `rows` rows want bf16 copies of their activations (the loop then writes
  // them beside the float32 ones where it can).
  virtual bool bf16_activations(int rows) { return false; }

  // Whether the values written to a float32 KV cache are rounded to e4m3 as an fp8 cache's would
  // be (the CPU's emulation of --kv-cache-dtype fp8); the loop then applies the KV cache scales.
  virtual bool rounds_kv_to_fp8() const { return false; }

  // Profiling spans around groups of ops (no-ops unless the backend profiles).
  virtual void begin_span(const char* name) {}
  virtual void end_span() {}
};

}  // namespace moeserve
