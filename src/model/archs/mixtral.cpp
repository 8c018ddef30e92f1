// Mixtral: GQA attention, every layer a softmax top-k MoE that always renormalises
// (`block_sparse_moe.experts.N.w1/w3/w2`).
#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {

static Status parse_mixtral(const ConfigReader& reader, ModelConfig& config) {
  MS_RETURN_IF_ERROR(parse_sliding_window(reader, config, /*gated_by_use_flag=*/false));
  MS_RETURN_IF_ERROR(parse_softmax_topk_moe(reader, config, "num_local_experts", "intermediate_size", true));
  config.moe->norm_topk_prob = true;  // Mixtral always renormalises its top-k weights
  config.layer_is_moe.assign(config.num_layers, true);
  return ok_status();
}

const ArchDefinition& mixtral_definition() {
  static const ArchDefinition definition{"MixtralForCausalLM", Architecture::kMixtral, parse_mixtral};
  return definition;
}

}  // namespace moeserve
