#include "model/archs/arch_common.h"

namespace moeserve {

Status parse_sliding_window(const ConfigReader& reader, ModelConfig& config, bool gated_by_use_flag) {
  MS_ASSIGN_OR_RETURN(bool use, reader.get_bool_or("use_sliding_window", !gated_by_use_flag));
  if (!use) return ok_status();
  MS_ASSIGN_OR_RETURN(config.sliding_window, reader.get_non_negative_int_or("sliding_window", 0));
  if (gated_by_use_flag && config.sliding_window > 0) {
    return make_error("config.json: use_sliding_window=true is not supported for {} (max_window_layers "
                      "semantics); set it to false",
                      config.architecture_name);
  }
  return ok_status();
}

Status parse_softmax_topk_moe(const ConfigReader& reader, ModelConfig& config, const char* num_experts_key,
                              const char* intermediate_key, bool norm_default) {
  MoeConfig moe;
  MS_ASSIGN_OR_RETURN(moe.num_experts, reader.get_int(num_experts_key));
  MS_ASSIGN_OR_RETURN(moe.top_k, reader.get_int("num_experts_per_tok"));
  MS_ASSIGN_OR_RETURN(moe.expert_intermediate_size, reader.get_int(intermediate_key));
  MS_ASSIGN_OR_RETURN(moe.norm_topk_prob, reader.get_bool_or("norm_topk_prob", norm_default));
  if (moe.top_k > moe.num_experts) {
    return make_error("config.json: num_experts_per_tok {} exceeds the {} experts", moe.top_k, moe.num_experts);
  }
  moe.scoring = RouterScoring::kSoftmax;
  moe.selection = RouterSelection::kTopK;
  config.moe = moe;
  return ok_status();
}

Status mark_qwen_moe_layers(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(int sparse_step, reader.get_positive_int_or("decoder_sparse_step", 1));
  std::vector<bool> mlp_only(config.num_layers, false);
  if (reader.has("mlp_only_layers")) {
    const auto& list = reader.raw().at("mlp_only_layers");
    if (!list.is_array()) return make_error("config.json: mlp_only_layers must be a list of layer indices");
    for (const auto& layer : list) {
      // Compared as int64: get<int>() would wrap 2^32 to layer 0.
      if (!layer.is_number_integer() || layer.get<int64_t>() < 0 || layer.get<int64_t>() >= config.num_layers) {
        return make_error("config.json: mlp_only_layers entry {} is not a layer index", json_excerpt(layer));
      }
      mlp_only[static_cast<size_t>(layer.get<int64_t>())] = true;
    }
  }
  for (int layer = 0; layer < config.num_layers; ++layer) {
    config.layer_is_moe[layer] = !mlp_only[layer] && (layer + 1) % sparse_step == 0;
  }
  return ok_status();
}

}  // namespace moeserve
