// Builds the weight inventory from a ModelConfig, family by family, mirroring the tensors
// transformers' modeling code creates (and so the tensors a checkpoint stores).
#include "plan/weights.h"

#include "base/check.h"

namespace moeserve::plan {
namespace {

struct Builder {
  std::vector<WeightGroup>& groups;
  int layer = -1;
  bool mtp = false;

  void add(std::string name, Component component, Sharding sharding, int64_t rows, int64_t cols = 1,
           int64_t count = 1, bool quantizable = false, bool keep_fp32 = false) {
    MS_CHECK(rows >= 1 && cols >= 1 && count >= 1);
    groups.push_back(WeightGroup{std::move(name), component, sharding, layer, mtp, rows, cols, count, quantizable,
                                 keep_fp32});
  }
  void linear(std::string name, Component component, Sharding sharding, int64_t out, int64_t in,
              int64_t count = 1) {
    add(std::move(name), component, sharding, out, in, count, /*quantizable=*/true);
  }
  void norm(std::string name, int64_t size) { add(std::move(name), Component::kNorm, Sharding::kReplicated, size); }
};

void add_gqa_attention(Builder& b, const ModelConfig& c) {
  const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
  const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
  b.linear("self_attn.q_proj.weight", Component::kAttention, Sharding::kColumn, q_width, c.hidden_size);
  b.linear("self_attn.k_proj.weight", Component::kAttention, Sharding::kKvHeads, kv_width, c.hidden_size);
  b.linear("self_attn.v_proj.weight", Component::kAttention, Sharding::kKvHeads, kv_width, c.hidden_size);
  b.linear("self_attn.o_proj.weight", Component::kAttention, Sharding::kRow, c.hidden_size, q_width);
  if (c.qkv_bias) {
    b.add("self_attn.q_proj.bias", Component::kAttention, Sharding::kColumn, q_width);
    b.add("self_attn.k_proj.bias", Component::kAttention, Sharding::kKvHeads, kv_width);
    b.add("self_attn.v_proj.bias", Component::kAttention, Sharding::kKvHeads, kv_width);
  }
  if (c.o_bias) b.add("self_attn.o_proj.bias", Component::kAttention, Sharding::kReplicated, c.hidden_size);
  if (c.qk_norm) {
    b.norm("self_attn.q_norm.weight", c.head_dim);
    b.norm("self_attn.k_norm.weight", c.head_dim);
  }
}

// MLA (DeepSeek-V2/V3): q through an optional LoRA (q_a → norm → q_b), k/v through the shared
// latent (kv_a_proj_with_mqa → norm → kv_b), per vLLM the *_a projections are replicated.
void add_mla_attention(Builder& b, const ModelConfig& c) {
  const MlaConfig& m = *c.mla;
  const int64_t heads = c.num_heads;
  if (m.q_lora_rank > 0) {
    b.linear("self_attn.q_a_proj.weight", Component::kAttention, Sharding::kReplicated, m.q_lora_rank, c.hidden_size);
    b.norm("self_attn.q_a_layernorm.weight", m.q_lora_rank);
    b.linear("self_attn.q_b_proj.weight", Component::kAttention, Sharding::kColumn, heads * m.qk_head_dim(),
             m.q_lora_rank);
  } else {
    b.linear("self_attn.q_proj.weight", Component::kAttention, Sharding::kColumn, heads * m.qk_head_dim(),
             c.hidden_size);
  }
  b.linear("self_attn.kv_a_proj_with_mqa.weight", Component::kAttention, Sharding::kReplicated,
           m.kv_lora_rank + m.qk_rope_head_dim, c.hidden_size);
  b.norm("self_attn.kv_a_layernorm.weight", m.kv_lora_rank);
  b.linear("self_attn.kv_b_proj.weight", Component::kAttention, Sharding::kColumn,
           heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank);
  b.linear("self_attn.o_proj.weight", Component::kAttention, Sharding::kRow, c.hidden_size, heads * m.v_head_dim);
}

void add_swiglu(Builder& b, const std::string& prefix, Component component, int64_t hidden, int64_t inter) {
  b.linear(prefix + ".gate_proj.weight", component, Sharding::kColumn, inter, hidden);
  b.linear(prefix + ".up_proj.weight", component, Sharding::kColumn, inter, hidden);
  b.linear(prefix + ".down_proj.weight", component, Sharding::kRow, hidden, inter);
}

void add_moe(Builder& b, const ModelConfig& c) {
  const MoeConfig& moe = *c.moe;
  const int64_t h = c.hidden_size;
  b.add("mlp.gate.weight", Component::kRouter, Sharding::kReplicated, moe.num_experts, h);
  if (moe.has_score_correction_bias) {
    b.add("mlp.gate.e_score_correction_bias", Component::kRouter, Sharding::kReplicated, moe.num_experts, 1, 1, false,
          /*keep_fp32=*/true);
  }
  const int64_t inter = moe.expert_intermediate_size;
  b.linear("mlp.experts.gate_proj.weight", Component::kRoutedExperts, Sharding::kExpertColumn, inter, h,
           moe.num_experts);
  b.linear("mlp.experts.up_proj.weight", Component::kRoutedExperts, Sharding::kExpertColumn, inter, h,
           moe.num_experts);
  b.linear("mlp.experts.down_proj.weight", Component::kRoutedExperts, Sharding::kExpertRow, h, inter,
           moe.num_experts);
  if (moe.shared_intermediate_size > 0) {
    add_swiglu(b, "mlp.shared_expert", Component::kSharedExperts, h, moe.shared_intermediate_size);
    if (moe.shared_expert_gate) {
      b.add("mlp.shared_expert_gate.weight", Component::kRouter, Sharding::kReplicated, 1, h);
    }
  }
}

void add_decoder_layer(Builder& b, const ModelConfig& c, bool is_moe) {
  b.norm("input_layernorm.weight", c.hidden_size);
  b.norm("post_attention_layernorm.weight", c.hidden_size);
  if (c.is_mla()) {
    add_mla_attention(b, c);
  } else {
    add_gqa_attention(b, c);
  }
  if (is_moe) {
    add_moe(b, c);
  } else {
    add_swiglu(b, "mlp", Component::kDenseMlp, c.hidden_size, c.intermediate_size);
  }
}

}  // namespace

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

WeightInventory enumerate_weights(const ModelConfig& config) {
  WeightInventory inventory;
  inventory.num_layers = config.num_layers;
  inventory.num_mtp_layers = config.num_mtp_layers;
  Builder b{inventory.groups};
  const int64_t h = config.hidden_size;
  b.add("model.embed_tokens.weight", Component::kEmbedding, Sharding::kVocab, config.vocab_size, h);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    b.layer = layer;
    add_decoder_layer(b, config, config.layer_is_moe[layer]);
  }
  // DeepSeek-V3's MTP module: one more decoder layer (MoE like the layers before it) plus
  // enorm/hnorm, eh_proj [h, 2h] and shared_head.norm; embed_tokens and shared_head.head reuse
  // the main model's (README_WEIGHTS.md of deepseek-ai/DeepSeek-V3).
  b.mtp = true;
  for (int index = 0; index < config.num_mtp_layers; ++index) {
    b.layer = config.num_layers + index;
    const bool moe = config.moe.has_value() && !config.layer_is_moe.empty() && config.layer_is_moe.back();
    add_decoder_layer(b, config, moe);
    b.norm("enorm.weight", h);
    b.norm("hnorm.weight", h);
    b.linear("eh_proj.weight", Component::kAttention, Sharding::kReplicated, h, 2 * h);
    b.norm("shared_head.norm.weight", h);
  }
  b.mtp = false;
  b.layer = -1;
  b.norm("model.norm.weight", h);
  if (!config.tie_word_embeddings) {
    b.add("lm_head.weight", Component::kLmHead, Sharding::kVocab, config.vocab_size, h);
  }
  return inventory;
}

ParamCounts count_params(const ModelConfig& config, const WeightInventory& inventory) {
  ParamCounts counts;
  for (const WeightGroup& group : inventory.groups) {
    if (group.mtp) {
      counts.mtp += group.elements();
      continue;
    }
    counts.total += group.elements();
    counts.by_component[static_cast<int>(group.component)] += group.elements();
    if (group.component == Component::kRoutedExperts) {
      counts.active += group.rows * group.cols * config.moe->top_k;
    } else {
      counts.active += group.elements();
    }
    if (group.component == Component::kEmbedding) counts.embedding += group.elements();
  }
  return counts;
}

}  // namespace moeserve::plan
