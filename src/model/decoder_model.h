// DecoderModel: the one decoder loop every supported family runs —
//   h = embed(ids); per layer: h += attn(norm(h)); h += ffn(norm(h)); logits = head(norm(h))
// where attn is GQA or MLA and ffn a dense SwiGLU MLP or an MoE block, chosen per layer from
// the ModelConfig. Architecture files only describe configs and tensor names (registry.h).
// A model may be one rank's shard (ModelOptions::shard, model/parallel.h); its forward then
// takes that rank's communicators and every rank of the group runs it in lockstep.
#pragma once

#include <memory>
#include <variant>
#include <vector>

#include "kvcache/kv_memory.h"
#include "loader/weight_source.h"
#include "model/config.h"
#include "model/forward_batch.h"
#include "model/layers/attention_gqa.h"
#include "model/layers/attention_mla.h"
#include "model/layers/mlp.h"
#include "model/layers/moe.h"

namespace moeserve {

struct ModelOptions {
  MlaMode mla_mode = MlaMode::kAuto;
  ShardSpec shard;  // this rank's part of the model (the whole model by default)
};

class DecoderModel {
 public:
  static Result<std::unique_ptr<DecoderModel>> load(const ModelConfig& config, const WeightSource& weights,
                                                    const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return shard_; }
  // Floats per token per layer in (this rank's) paged KV cache.
  int kv_entry_size() const;

  // Runs one step. The cache must have blocks for every position in batch.sequences.
  // logits [batch.logit_rows.size(), vocab]. A sharded model needs its rank's communicators,
  // and every rank of its groups must run the step (an idle rank an empty batch).
  void forward(ExecContext& exec, const ForwardBatch& batch, const KvMemory& kv, const TensorView& logits,
               const ParallelComm& comm = {}) const;

  // The MoE block of a layer, or null for dense layers (EPLB swaps its placement between steps).
  MoeBlock* moe_block(int layer_idx);
  const MoeBlock* moe_block(int layer_idx) const;

 private:
  struct Layer {
    TensorView input_norm;      // [hidden]
    TensorView post_attn_norm;  // [hidden]
    std::variant<GqaAttention, MlaAttention> attention;
    std::variant<SwigluMlp, MoeBlock> ffn;
  };

  ModelConfig config_;
  ShardSpec shard_;
  std::vector<Tensor> owned_weights_;  // row-parallel shards copied out of the checkpoint
  TensorView embed_tokens_;  // [vocab, hidden]
  TensorView final_norm_;    // [hidden]
  TensorView lm_head_;       // [vocab, hidden] (embed_tokens_ when tied)
  std::vector<Layer> layers_;
};

}  // namespace moeserve
