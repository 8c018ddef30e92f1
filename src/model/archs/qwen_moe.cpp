// Qwen2-MoE and Qwen3-MoE: GQA attention (Qwen2: q/k/v bias; Qwen3: per-head q/k RMSNorm and
// an explicit head_dim), softmax top-k routing with optional renormalisation, and for Qwen2-MoE
// a shared expert scaled by sigmoid(x · shared_expert_gate).
#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {

static Status parse_qwen2_moe(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.qkv_bias, reader.get_bool_or("qkv_bias", true));
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/true));
  MS_RETURN_IF_ERROR(parse_softmax_topk_moe(reader, config, "num_experts", "moe_intermediate_size", false));
  MS_ASSIGN_OR_RETURN(config.moe->shared_intermediate_size,
                      reader.get_non_negative_int_or("shared_expert_intermediate_size", 0));
  config.moe->shared_expert_gate = config.moe->shared_intermediate_size > 0;
  return mark_qwen_moe_layers(reader, config);
}

static Status parse_qwen3_moe(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.qkv_bias, reader.get_bool_or("attention_bias", false));
  config.o_bias = false;
  config.qk_norm = true;
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/true));
  MS_RETURN_IF_ERROR(parse_softmax_topk_moe(reader, config, "num_experts", "moe_intermediate_size", false));
  return mark_qwen_moe_layers(reader, config);
}

const ArchDefinition& qwen2_moe_definition() {
  static const ArchDefinition definition{"Qwen2MoeForCausalLM", Architecture::kQwen2Moe, parse_qwen2_moe};
  return definition;
}

const ArchDefinition& qwen3_moe_definition() {
  static const ArchDefinition definition{"Qwen3MoeForCausalLM", Architecture::kQwen3Moe, parse_qwen3_moe};
  return definition;
}

}  // namespace moeserve
