// The weight plan of every supported family, mirroring the tensors transformers' modeling code
// creates (and so the names and shapes a checkpoint stores). The families share the decoder
// layer's layout; they differ only in the MoE block's names (moe_names below).
#include "model/weight_plan.h"

#include <fmt/format.h>

#include "base/check.h"

namespace moeserve {
namespace {

// The MoE block's tensor names inside `model.layers.{i}.`, per family.
struct MoeNames {
  const char* block;          // "block_sparse_moe" (Mixtral), "feed_forward" (Llama 4) or "mlp"
  const char* router;         // "gate" or "router" (Llama 4, GPT-OSS)
  const char* expert_gate;    // "w1" or "gate_proj"
  const char* expert_up;      // "w3" or "up_proj"
  const char* expert_down;    // "w2" or "down_proj"
  const char* shared_expert;  // "shared_expert" (Qwen2-MoE, Llama 4) or "shared_experts" (DeepSeek)
  const char* dense_mlp;      // a dense layer's MLP: "mlp" or "feed_forward" (Llama 4)
  // Llama 4: the experts fused into experts.gate_up_proj [E, hidden, 2I] (gate the first I
  // columns, up the last I) and experts.down_proj [E, I, hidden].
  bool fused_experts;
};

MoeNames moe_names(Architecture architecture) {
  switch (architecture) {
    case Architecture::kMixtral: return {"block_sparse_moe", "gate", "w1", "w3", "w2", "", "mlp", false};
    case Architecture::kQwen2Moe:
      return {"mlp", "gate", "gate_proj", "up_proj", "down_proj", "shared_expert", "mlp", false};
    case Architecture::kDeepseekV2:
    case Architecture::kDeepseekV3:
    case Architecture::kDeepseekV32:
      return {"mlp", "gate", "gate_proj", "up_proj", "down_proj", "shared_experts", "mlp", false};
    case Architecture::kLlama4:
      return {"feed_forward", "router", "gate_up_proj", "gate_up_proj", "down_proj", "shared_expert", "feed_forward",
              true};
    case Architecture::kGptOss: return {"mlp", "router", "", "", "", "", "mlp", false};  // gpt_oss_experts()
    default: return {"mlp", "gate", "gate_proj", "up_proj", "down_proj", "", "mlp", false};
  }
}

}  // namespace

class WeightPlanBuilder {
 public:
  WeightPlanBuilder(WeightPlan& plan, const ModelConfig& config) : plan_(plan), c_(config) {}

  void build() {
    plan_.num_layers_ = c_.num_layers;
    plan_.num_mtp_layers_ = c_.num_mtp_layers;
    plan_.index_.assign(static_cast<size_t>(c_.num_layers + c_.num_mtp_layers + 1),
                        std::vector<int32_t>(kNumWeightRoles, -1));
    const int64_t h = c_.hidden_size;
    prefix_ = c_.weight_prefix;
    add(WeightRole::kEmbedding, "model.embed_tokens.weight", Shape{c_.vocab_size, h}, Component::kEmbedding,
        Sharding::kVocab);
    for (int layer = 0; layer < c_.num_layers; ++layer) {
      begin_layer(layer, /*mtp=*/false);
      decoder_layer(c_.layer_is_moe[layer]);
    }
    // DeepSeek-V3's MTP module: one more decoder layer (MoE like the layers before it) plus
    // enorm/hnorm, eh_proj [h, 2h] and shared_head.norm; embed_tokens and shared_head.head reuse
    // the main model's (README_WEIGHTS.md of deepseek-ai/DeepSeek-V3).
    for (int index = 0; index < c_.num_mtp_layers; ++index) {
      begin_layer(c_.num_layers + index, /*mtp=*/true);
      decoder_layer(c_.moe.has_value() && !c_.layer_is_moe.empty() && c_.layer_is_moe.back());
      norm(WeightRole::kMtpEnorm, "enorm.weight", h);
      norm(WeightRole::kMtpHnorm, "hnorm.weight", h);
      linear(WeightRole::kMtpEhProj, "eh_proj.weight", Shape{h, 2 * h}, Component::kAttention,
             Sharding::kReplicated);
      norm(WeightRole::kMtpHeadNorm, "shared_head.norm.weight", h);
    }
    layer_ = -1;
    mtp_ = false;
    prefix_ = c_.weight_prefix;
    norm(WeightRole::kFinalNorm, "model.norm.weight", h);
    if (!c_.tie_word_embeddings) {
      add(WeightRole::kLmHead, "lm_head.weight", Shape{c_.vocab_size, h}, Component::kLmHead, Sharding::kVocab);
    }
  }

 private:
  void begin_layer(int layer, bool mtp) {
    layer_ = layer;
    mtp_ = mtp;
    prefix_ = fmt::format("{}model.layers.{}.", c_.weight_prefix, layer);
  }

  WeightEntry& add(WeightRole role, const std::string& name, Shape shape, Component component, Sharding sharding,
                   PackGroup pack = PackGroup::kNone) {
    for (int d = 0; d < shape.rank(); ++d) MS_CHECK(shape[d] >= 1);
    int32_t& slot = plan_.index_[static_cast<size_t>(layer_ + 1)][static_cast<int>(role)];
    MS_CHECK(slot < 0);  // a role appears once per layer
    slot = static_cast<int32_t>(plan_.entries_.size());
    WeightEntry& entry = plan_.entries_.emplace_back();
    entry.role = role;
    entry.name = prefix_ + name;
    entry.shape = std::move(shape);
    entry.layer = layer_;
    entry.mtp = mtp_;
    entry.component = component;
    entry.sharding = sharding;
    entry.pack = pack;
    return entry;
  }
  void linear(WeightRole role, const std::string& name, Shape shape, Component component, Sharding sharding,
              PackGroup pack = PackGroup::kNone) {
    add(role, name, std::move(shape), component, sharding, pack).quantizable = true;
  }
  // A routed-expert projection [out, in] (shape) read from the fused checkpoint tensor `name`
  // [E, in, fused_cols]: columns offset + j * stride of its last dim (WeightEntry::fused_cols).
  // A vector shape [out] (a fused bias, stored [E, fused_cols]) is selected the same way.
  WeightEntry& fused_expert(WeightRole role, const std::string& name, Shape shape, Sharding sharding, PackGroup pack,
                            int64_t fused_cols, int64_t offset, int64_t stride) {
    MS_CHECK(offset >= 0 && stride >= 1 && offset + (shape[0] - 1) * stride < fused_cols);
    const bool vector = shape.rank() == 1;
    WeightEntry& entry = add(role, name, std::move(shape), Component::kRoutedExperts, sharding, pack);
    entry.quantizable = !vector;
    entry.count = c_.moe->num_experts;
    entry.fused_cols = fused_cols;
    entry.fused_offset = offset;
    entry.fused_stride = stride;
    return entry;
  }
  void norm(WeightRole role, const std::string& name, int64_t size) {
    add(role, name, Shape{size}, Component::kNorm, Sharding::kReplicated);
  }

  void decoder_layer(bool is_moe) {
    norm(WeightRole::kInputNorm, "input_layernorm.weight", c_.hidden_size);
    norm(WeightRole::kPostAttentionNorm, "post_attention_layernorm.weight", c_.hidden_size);
    if (c_.is_mla()) {
      mla_attention();
    } else {
      gqa_attention();
    }
    if (is_moe) {
      moe();
    } else {
      swiglu(kDenseMlpRoles, std::string(moe_names(c_.architecture).dense_mlp) + ".", Component::kDenseMlp,
             c_.intermediate_size, PackGroup::kMlpGateUp);
    }
  }

  void gqa_attention() {
    const int64_t h = c_.hidden_size;
    const int64_t q_width = int64_t{c_.num_heads} * c_.head_dim;
    const int64_t kv_width = int64_t{c_.num_kv_heads} * c_.head_dim;
    const Component attn = Component::kAttention;
    linear(WeightRole::kQ, "self_attn.q_proj.weight", Shape{q_width, h}, attn, Sharding::kColumn, PackGroup::kQkv);
    linear(WeightRole::kK, "self_attn.k_proj.weight", Shape{kv_width, h}, attn, Sharding::kKvHeads, PackGroup::kQkv);
    linear(WeightRole::kV, "self_attn.v_proj.weight", Shape{kv_width, h}, attn, Sharding::kKvHeads, PackGroup::kQkv);
    linear(WeightRole::kO, "self_attn.o_proj.weight", Shape{h, q_width}, attn, Sharding::kRow);
    if (c_.qkv_bias) {
      add(WeightRole::kQBias, "self_attn.q_proj.bias", Shape{q_width}, attn, Sharding::kColumn, PackGroup::kQkvBias);
      add(WeightRole::kKBias, "self_attn.k_proj.bias", Shape{kv_width}, attn, Sharding::kKvHeads,
          PackGroup::kQkvBias);
      add(WeightRole::kVBias, "self_attn.v_proj.bias", Shape{kv_width}, attn, Sharding::kKvHeads,
          PackGroup::kQkvBias);
    }
    // Row-parallel: the bias is whole on every rank and added once (by TP rank 0).
    if (c_.o_bias) add(WeightRole::kOBias, "self_attn.o_proj.bias", Shape{h}, attn, Sharding::kReplicated);
    if (c_.qk_norm) {
      norm(WeightRole::kQNorm, "self_attn.q_norm.weight", c_.head_dim);
      norm(WeightRole::kKNorm, "self_attn.k_norm.weight", c_.head_dim);
    }
    // [num_heads]: split with the q heads.
    if (c_.attention_sinks) {
      add(WeightRole::kAttnSinks, "self_attn.sinks", Shape{c_.num_heads}, attn, Sharding::kColumn).keep_fp32 = true;
    }
  }

  // MLA (DeepSeek-V2/V3): q through an optional LoRA (q_a → norm → q_b), k/v through the
  // shared latent (kv_a_proj_with_mqa → norm → kv_b); per vLLM the *_a projections are
  // replicated.
  void mla_attention() {
    const MlaConfig& m = *c_.mla;
    const int64_t h = c_.hidden_size;
    const int64_t heads = c_.num_heads;
    const Component attn = Component::kAttention;
    if (m.q_lora_rank > 0) {
      linear(WeightRole::kQA, "self_attn.q_a_proj.weight", Shape{m.q_lora_rank, h}, attn, Sharding::kReplicated);
      norm(WeightRole::kQANorm, "self_attn.q_a_layernorm.weight", m.q_lora_rank);
      linear(WeightRole::kQB, "self_attn.q_b_proj.weight", Shape{heads * m.qk_head_dim(), m.q_lora_rank}, attn,
             Sharding::kColumn);
    } else {
      linear(WeightRole::kQ, "self_attn.q_proj.weight", Shape{heads * m.qk_head_dim(), h}, attn, Sharding::kColumn);
    }
    linear(WeightRole::kKvA, "self_attn.kv_a_proj_with_mqa.weight", Shape{m.kv_lora_rank + m.qk_rope_head_dim, h},
           attn, Sharding::kReplicated, PackGroup::kMlaKvA);
    norm(WeightRole::kKvANorm, "self_attn.kv_a_layernorm.weight", m.kv_lora_rank);
    linear(WeightRole::kKvB, "self_attn.kv_b_proj.weight",
           Shape{heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank}, attn, Sharding::kColumn);
    linear(WeightRole::kO, "self_attn.o_proj.weight", Shape{h, heads * m.v_head_dim}, attn, Sharding::kRow);
    if (m.indexer) indexer(*m.indexer);
  }

  // DeepSeek-V3.2's lightning indexer, whole on every rank (each selects the same keys), named as
  // deepseek-ai/DeepSeek-V3.2 publishes it. weights_proj stays bf16 in the fp8 checkpoints.
  void indexer(const IndexerConfig& ix) {
    const std::string prefix = "self_attn.indexer.";
    const int64_t h = c_.hidden_size;
    const Component attn = Component::kAttention;
    linear(WeightRole::kIndexerQB, prefix + "wq_b.weight", Shape{int64_t{ix.heads} * ix.head_dim, c_.mla->q_lora_rank},
           attn, Sharding::kReplicated);
    linear(WeightRole::kIndexerK, prefix + "wk.weight", Shape{ix.head_dim, h}, attn, Sharding::kReplicated,
           PackGroup::kMlaKvA);
    add(WeightRole::kIndexerKNorm, prefix + "k_norm.weight", Shape{ix.head_dim}, Component::kNorm,
        Sharding::kReplicated)
        .keep_fp32 = true;
    add(WeightRole::kIndexerKNormBias, prefix + "k_norm.bias", Shape{ix.head_dim}, Component::kNorm,
        Sharding::kReplicated)
        .keep_fp32 = true;
    add(WeightRole::kIndexerWeights, prefix + "weights_proj.weight", Shape{ix.heads, h}, attn, Sharding::kReplicated,
        PackGroup::kMlaKvA);
  }

  // gate/up [inter, h] (column-parallel), down [h, inter] (row-parallel).
  void swiglu(const SwigluRoles& roles, const std::string& prefix, Component component, int64_t inter,
              PackGroup pack) {
    const int64_t h = c_.hidden_size;
    linear(roles.gate, prefix + "gate_proj.weight", Shape{inter, h}, component, Sharding::kColumn, pack);
    linear(roles.up, prefix + "up_proj.weight", Shape{inter, h}, component, Sharding::kColumn, pack);
    linear(roles.down, prefix + "down_proj.weight", Shape{h, inter}, component, Sharding::kRow);
  }

  void moe() {
    const MoeConfig& moe = *c_.moe;
    const MoeNames names = moe_names(c_.architecture);
    const int64_t h = c_.hidden_size;
    const int64_t inter = moe.expert_intermediate_size;
    const std::string block = std::string(names.block) + ".";
    const std::string router = block + names.router;
    add(WeightRole::kRouter, router + ".weight", Shape{moe.num_experts, h}, Component::kRouter, Sharding::kReplicated);
    if (moe.router_bias) {
      add(WeightRole::kRouterLogitBias, router + ".bias", Shape{moe.num_experts}, Component::kRouter,
          Sharding::kReplicated)
          .keep_fp32 = true;
    }
    if (moe.has_score_correction_bias) {
      add(WeightRole::kRouterBias, block + "gate.e_score_correction_bias", Shape{moe.num_experts}, Component::kRouter,
          Sharding::kReplicated)
          .keep_fp32 = true;
    }
    const auto expert = [&](WeightRole role, const char* name, Shape shape, Sharding sharding, PackGroup pack) {
      linear(role, block + "experts.", std::move(shape), Component::kRoutedExperts, sharding, pack);
      WeightEntry& entry = plan_.entries_.back();
      entry.name_suffix = fmt::format(".{}.weight", name);
      entry.count = moe.num_experts;
    };
    if (c_.architecture == Architecture::kGptOss) {
      gpt_oss_experts(block + "experts.");
    } else if (names.fused_experts) {
      const std::string gate_up = block + "experts." + names.expert_gate;
      fused_expert(WeightRole::kExpertGate, gate_up, Shape{inter, h}, Sharding::kExpertColumn,
                   PackGroup::kExpertGateUp, 2 * inter, 0, 1);
      fused_expert(WeightRole::kExpertUp, gate_up, Shape{inter, h}, Sharding::kExpertColumn, PackGroup::kExpertGateUp,
                   2 * inter, inter, 1);
      fused_expert(WeightRole::kExpertDown, block + "experts." + names.expert_down, Shape{h, inter},
                   Sharding::kExpertRow, PackGroup::kNone, h, 0, 1);
    } else {
      expert(WeightRole::kExpertGate, names.expert_gate, Shape{inter, h}, Sharding::kExpertColumn,
             PackGroup::kExpertGateUp);
      expert(WeightRole::kExpertUp, names.expert_up, Shape{inter, h}, Sharding::kExpertColumn,
             PackGroup::kExpertGateUp);
      expert(WeightRole::kExpertDown, names.expert_down, Shape{h, inter}, Sharding::kExpertRow, PackGroup::kNone);
    }
    if (moe.shared_intermediate_size > 0) {
      swiglu(kSharedExpertRoles, block + names.shared_expert + ".", Component::kSharedExperts,
             moe.shared_intermediate_size, PackGroup::kSharedGateUp);
      if (moe.shared_expert_gate) {
        add(WeightRole::kSharedExpertGate, block + "shared_expert_gate.weight", Shape{1, h}, Component::kRouter,
            Sharding::kReplicated);
      }
    }
  }

  // GPT-OSS's experts, fused: gate_up_proj [E, hidden, 2I] (gate = its even columns, up = its
  // odd ones) and down_proj [E, I, hidden], with gate_up_proj_bias [E, 2I] (interleaved alike) and
  // down_proj_bias [E, hidden], the biases kept float32.
  void gpt_oss_experts(const std::string& experts) {
    const int64_t h = c_.hidden_size;
    const int64_t inter = c_.moe->expert_intermediate_size;
    const std::string gate_up = experts + "gate_up_proj", down = experts + "down_proj";
    fused_expert(WeightRole::kExpertGate, gate_up, Shape{inter, h}, Sharding::kExpertColumn, PackGroup::kExpertGateUp,
                 2 * inter, 0, 2);
    fused_expert(WeightRole::kExpertUp, gate_up, Shape{inter, h}, Sharding::kExpertColumn, PackGroup::kExpertGateUp,
                 2 * inter, 1, 2);
    fused_expert(WeightRole::kExpertDown, down, Shape{h, inter}, Sharding::kExpertRow, PackGroup::kNone, h, 0, 1);
    fused_expert(WeightRole::kExpertGateBias, gate_up + "_bias", Shape{inter}, Sharding::kExpertColumn,
                 PackGroup::kExpertGateUpBias, 2 * inter, 0, 2)
        .keep_fp32 = true;
    fused_expert(WeightRole::kExpertUpBias, gate_up + "_bias", Shape{inter}, Sharding::kExpertColumn,
                 PackGroup::kExpertGateUpBias, 2 * inter, 1, 2)
        .keep_fp32 = true;
    // Whole on every rank (row-parallel: the loader keeps it on one rank of a TP split).
    fused_expert(WeightRole::kExpertDownBias, down + "_bias", Shape{h}, Sharding::kReplicated, PackGroup::kNone, h, 0,
                 1)
        .keep_fp32 = true;
  }

  WeightPlan& plan_;
  const ModelConfig& c_;
  int layer_ = -1;
  bool mtp_ = false;
  std::string prefix_;
};

std::string WeightEntry::tensor_name(int expert) const {
  if (fused()) MS_CHECK(expert >= 0 && expert < count);
  if (name_suffix.empty()) return name;
  MS_CHECK(expert >= 0 && expert < count);
  return fmt::format("{}{}{}", name, expert, name_suffix);
}

Shape WeightEntry::stored_shape() const {
  if (!fused()) return shape;
  return shape.rank() == 2 ? Shape{count, cols(), fused_cols} : Shape{count, fused_cols};
}

const char* component_name(Component component) {
  switch (component) {
    case Component::kEmbedding: return "embedding";
    case Component::kLmHead: return "lm_head";
    case Component::kAttention: return "attention";
    case Component::kDenseMlp: return "dense_mlp";
    case Component::kRoutedExperts: return "routed_experts";
    case Component::kSharedExperts: return "shared_experts";
    case Component::kRouter: return "routers";
    case Component::kNorm: return "norms";
  }
  return "?";
}

WeightPlan WeightPlan::build(const ModelConfig& config) {
  WeightPlan plan;
  WeightPlanBuilder(plan, config).build();
  return plan;
}

const WeightEntry* WeightPlan::find(WeightRole role, int layer) const {
  MS_CHECK(layer >= -1 && layer + 1 < static_cast<int>(index_.size()));
  const int32_t at = index_[static_cast<size_t>(layer + 1)][static_cast<int>(role)];
  return at < 0 ? nullptr : &entries_[static_cast<size_t>(at)];
}

const WeightEntry& WeightPlan::get(WeightRole role, int layer) const {
  const WeightEntry* entry = find(role, layer);
  MS_CHECK(entry != nullptr);
  return *entry;
}

std::vector<const WeightEntry*> WeightPlan::packed(PackGroup group, int layer) const {
  std::vector<const WeightEntry*> out;
  for (int32_t at : index_[static_cast<size_t>(layer + 1)]) {
    if (at >= 0 && entries_[static_cast<size_t>(at)].pack == group) out.push_back(&entries_[static_cast<size_t>(at)]);
  }
  return out;
}

double decode_read_elements(const ModelConfig& config, const WeightPlan& plan, double routed_per_layer) {
  return decode_read_bytes(config, plan, routed_per_layer, [](const WeightEntry&) { return 1.0; });
}

double decode_read_bytes(const ModelConfig& config, const WeightPlan& plan, double routed_per_layer,
                         const std::function<double(const WeightEntry&)>& bytes_per_element) {
  double total = 0.0;
  for (const WeightEntry& entry : plan.entries()) {
    if (entry.mtp) continue;
    double elements = 0.0;
    if (entry.component == Component::kEmbedding) {
      if (config.tie_word_embeddings) elements = static_cast<double>(entry.elements());  // read as the LM head
    } else if (entry.component == Component::kRoutedExperts) {
      const double routed = routed_per_layer >= 0.0 ? routed_per_layer : config.moe->top_k;
      elements = static_cast<double>(entry.shape.numel()) * routed;
    } else {
      elements = static_cast<double>(entry.elements());
    }
    total += elements * bytes_per_element(entry);
  }
  return total;
}

}  // namespace moeserve
