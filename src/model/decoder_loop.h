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
#include "model/parallel.h"
#include "model/step_model.h"

namespace moeserve {

// Rows of an MLA piece from which attention runs in the plain (up-projected) form when the
// step's pieces are known; shorter pieces (decode rows) and captured graphs use the absorbed form.
constexpr int kMinMlaPrefillRows = 16;

class DecoderLoop {
 public:
  // weights: TP rank tp.rank's part (load_model_weights with the same partition).
  DecoderLoop(const ModelConfig& config, const ModelWeights& weights, const Partition& tp = {});

  // Arena bytes a step of up to max_tokens rows (and as many logit rows) needs, besides the
  // backend's own scratch (extra_bytes: the CUDA GEMMs' split-K workspaces, the MLA score tile).
  size_t workspace_bytes(int max_tokens, size_t extra_bytes) const;

  // One step: logits [inputs.logit_rows, vocab] float32 land in `logits` (backend memory).
  // expert_load [num_layers × E] int64 accumulates routed rows per expert (may be null).
  // tp_comm: the TP group (null on one rank); every rank of it runs the same step in lockstep,
  // and each block's row-parallel output is summed over it before the residual add.
  void forward(StepBackend& backend, const StepInputs& inputs, const KvLayers& kv, float* logits,
               int64_t* expert_load, Communicator* tp_comm = nullptr) const;

 private:
  struct Step {
    StepBackend& backend;
    StepArena& arena;
    const StepInputs& in;
    const KvLayers& kv;
    int64_t* expert_load;
    Communicator* tp;
  };
  // Attention blocks: their output projection into out, or left as partial sums.
  ops::SplitSums gqa(Step& step, int layer_idx, Act x, float* out) const;
  ops::SplitSums mla(Step& step, int layer_idx, Act x, float* out) const;
  // The attention output projection into out: with TP its all-reduced sum, on one rank left as
  // the backend's partial sums (for the norm that adds it).
  ops::SplitSums output_projection(Step& step, const float* attended, const Projection& o, float* out) const;
  // Whether this step's MLA attention runs in the plain form (the pieces' workspaces fit).
  bool mla_plain_prefill(const Step& step, const ops::MlaDims& dims) const;
  // then (or null): the residual add + RMSNorm that follows the block, fused into its combine.
  void moe(Step& step, int layer_idx, Act x, float* out, const ops::RmsNormArgs* then) const;

  const ModelConfig& config_;
  const ModelWeights& weights_;
  int heads_ = 0;     // attention heads on this rank
  int kv_heads_ = 0;  // KV heads on this rank (replicated when fewer than the TP ranks)
};

}  // namespace moeserve
