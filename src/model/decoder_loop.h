// DecoderLoop: the one decoder step over a StepBackend (issue 19) — embed; per layer
// h += attn(norm(h)); h += ffn(norm(h)); logits = head(norm(h)) — in the shape that runs at the
// GPU's memory roofline:
//   - the residual stream fused: a block's output is added by the next norm (rms_norm's add),
//     and after an MoE block by its combine, which computes the next norm itself;
//   - split-K partial sums left for their consumer (the norm, the combine) to add;
//   - MoE as router → permute (rows grouped by expert, on the backend) → grouped experts →
//     weighted combine with the shared expert;
//   - every buffer from the step's arena, rewound after each layer.
// Precision and kernel choices (which GEMM runs where) belong to the backend; the math and its
// order belong here, so every backend runs the same step.
#pragma once

#include "comm/communicator.h"
#include "model/moe_dispatch.h"
#include "model/parallel.h"
#include "model/step_model.h"

namespace moeserve {

// Rows of an MLA piece from which attention runs in the plain (up-projected) form when the
// step's pieces are known; shorter pieces (decode rows) and captured graphs use the absorbed form.
constexpr int kMinMlaPrefillRows = 16;

// MLA's two equal forms: kAuto as above; kNaive the plain form for every piece (decode rows
// too); kAbsorbed the absorbed form always (what a captured graph runs).
enum class MlaMode { kAuto, kNaive, kAbsorbed };

// Routing counters a step adds to (each may be null). experts is in the backend's memory, except
// under expert parallelism, where the dispatch counts both on the host.
struct LoadCounters {
  int64_t* experts = nullptr;  // [num_layers × E]: (token, k) assignments per logical expert
  int64_t* slots = nullptr;    // [num_layers × physical slots] (expert parallelism): per slot
};

class DecoderLoop {
 public:
  // weights: the part of the rank `shard` describes (load_model_weights with the same spec).
  DecoderLoop(const ModelConfig& config, const ModelWeights& weights, const ShardSpec& shard = {},
              MlaMode mla_mode = MlaMode::kAuto);

  // One step: logits [inputs.logit_rows, vocab] float32 land in `logits` (backend memory).
  // counters: the routing counts to add to (host memory for slots; experts in the backend's).
  // comm: the rank's TP group (each block's row-parallel output is summed over it before the
  // residual add) and, with expert parallelism, its EP group (tokens dispatched to the ranks
  // holding their experts and combined back); null on one rank. Every rank of a group runs a
  // step in lockstep, an idle DP replica an empty one.
  void forward(StepBackend& backend, const StepInputs& inputs, const KvLayers& kv, float* logits,
               const LoadCounters& counters = {}, const ParallelComm& comm = {}) const;

 private:
  struct Step {
    StepBackend& backend;
    StepArena& arena;
    const StepInputs& in;
    const KvLayers& kv;
    const LoadCounters& load;
    Communicator* tp;
    Communicator* ep;
  };
  // Attention blocks: their output projection into out, or left as partial sums.
  ops::SplitSums gqa(Step& step, int layer_idx, Act x, float* out) const;
  ops::SplitSums mla(Step& step, int layer_idx, Act x, float* out) const;
  // DeepSeek-V3.2's indexer: from compressed [tokens, r + dr + Di + Hi] (kv_a's rows, the latent
  // normed and k_pe rotated), the index key normed, rotated and the entry [r + dr + Di] cached
  // (rope_key: k_pe's rotation with the cache write); queries from q_latent [tokens, rq]. Returns
  // the arena's [tokens, topk] key positions per row (IndexerArgs::out).
  const int32_t* index_keys(Step& step, int layer_idx, const float* q_latent, float* compressed,
                            const ops::RopeArgs& rope_key) const;
  // The attention output projection into out: with TP its all-reduced sum, on one rank left as
  // the backend's partial sums (for the norm that adds it).
  ops::SplitSums output_projection(Step& step, const float* attended, const Projection& o, float* out) const;
  // Whether this step's MLA attention runs in the plain form (the pieces' workspaces fit).
  bool mla_plain_prefill(const Step& step, const ops::MlaDims& dims) const;
  // Whether a piece of MLA rows runs in the plain form (mla_plain_prefill's per-piece rule).
  bool plain_piece(const StepPiece& piece) const;
  // then (or null): the residual add + RMSNorm that follows the block, fused into its combine.
  void moe(Step& step, int layer_idx, Act x, float* out, const ops::RmsNormArgs* then) const;
  // The MoE block with expert parallelism: out [tokens, hidden] = the whole block's output
  // (routed experts through the EP dispatch, shared experts, gathered over TP).
  void moe_expert_parallel(Step& step, int layer_idx, const float* x, float* out) const;
  // partial [n, hidden] = Σ over the arrived (t, k) routed to this rank's slots of weight ·
  // expert(x[t]); arrived.x and partial in the backend's memory (the dispatch's).
  void run_local_experts(Step& step, const MoeWeights& w, const RoutedTokens& arrived, const TensorView& partial) const;
  // The layer's checkpoint KV cache scales where the step's cache is e4m3 (or its values rounded as
  // if, StepBackend::rounds_kv_to_fp8), else {1, 1} (a float32 cache ignores them, as vLLM's
  // 16-bit one does).
  ops::KvScales kv_scales(const Step& step, int layer_idx) const;

  const ModelConfig& config_;
  const ModelWeights& weights_;
  ShardSpec shard_;
  MlaMode mla_mode_;
  int min_plain_rows_;  // MLA pieces of at least this many rows run the plain form
  int heads_ = 0;     // attention heads on this rank
  int kv_heads_ = 0;  // KV heads on this rank (replicated when fewer than the TP ranks)
};

}  // namespace moeserve
