// The dense families that share the MoE models' parts: Llama and Mistral (GQA, SwiGLU MLP,
// optional attention_bias), Qwen2 (q/k/v bias) and Qwen3 (q/k RMSNorm).
#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {

static Status require_dense_mlp(const ModelConfig& config) {
  if (config.intermediate_size <= 0) return make_error("config.json: intermediate_size must be positive");
  return ok_status();
}

static Status parse_llama(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.qkv_bias, reader.get_bool_or("attention_bias", false));
  config.o_bias = config.qkv_bias;
  MS_ASSIGN_OR_RETURN(bool mlp_bias, reader.get_bool_or("mlp_bias", false));
  if (mlp_bias) return make_error("config.json: mlp_bias=true is not supported");
  return require_dense_mlp(config);
}

static Status parse_mistral(const ConfigReader& reader, ModelConfig& config) {
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/false));
  return require_dense_mlp(config);
}

static Status parse_qwen2(const ConfigReader& reader, ModelConfig& config) {
  config.qkv_bias = true;
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/true));
  return require_dense_mlp(config);
}

static Status parse_qwen3(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.qkv_bias, reader.get_bool_or("attention_bias", false));
  config.qk_norm = true;
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/true));
  return require_dense_mlp(config);
}

const ArchDefinition& llama_definition() {
  static const ArchDefinition definition{"LlamaForCausalLM", Architecture::kLlama, parse_llama};
  return definition;
}
const ArchDefinition& mistral_definition() {
  static const ArchDefinition definition{"MistralForCausalLM", Architecture::kMistral, parse_mistral};
  return definition;
}
const ArchDefinition& qwen2_definition() {
  static const ArchDefinition definition{"Qwen2ForCausalLM", Architecture::kQwen2, parse_qwen2};
  return definition;
}
const ArchDefinition& qwen3_definition() {
  static const ArchDefinition definition{"Qwen3ForCausalLM", Architecture::kQwen3, parse_qwen3};
  return definition;
}

}  // namespace moeserve
