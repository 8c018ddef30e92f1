// GPT-OSS (gpt-oss-20b, gpt-oss-120b): GQA attention with q/k/v/o biases and a learned per-head
// sink logit in each softmax, layers alternating between a sliding window and full attention
// (layer_types), YaRN rope, and on every layer an MoE of biased experts with the clamped SwiGLU,
// routed by a biased Linear whose top-k logits are softmaxed. The checkpoint stores each layer's
// experts fused: gate_up_proj [E, hidden, 2I] (gate and up interleaved by column) and down_proj
// [E, I, hidden] (model/weight_plan.cpp).
#include <string>

#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {

static Status parse_layer_types(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.sliding_window, reader.get_positive_int_or("sliding_window", 128));
  config.layer_windows.assign(config.num_layers, 0);
  if (!reader.has("layer_types")) {  // transformers' default: even layers slide, odd layers see everything
    for (int layer = 0; layer < config.num_layers; layer += 2) config.layer_windows[layer] = config.sliding_window;
    return ok_status();
  }
  // One type per layer; a longer list is cut to num_hidden_layers (what --hf-overrides
  // '{"num_hidden_layers": 4}' leaves of a published config).
  const auto& types = reader.raw().at("layer_types");
  if (!types.is_array() || types.size() < static_cast<size_t>(config.num_layers)) {
    return make_error("config.json: layer_types must list one type per layer ({} layers), got {}", config.num_layers,
                      json_excerpt(types));
  }
  for (int layer = 0; layer < config.num_layers; ++layer) {
    const auto& type = types[static_cast<size_t>(layer)];
    if (type == "sliding_attention") {
      config.layer_windows[layer] = config.sliding_window;
    } else if (type != "full_attention") {
      return make_error("config.json: layer_types[{}] is {} (supported: sliding_attention, full_attention)", layer,
                        json_excerpt(type));
    }
  }
  return ok_status();
}

static Status parse_gpt_oss(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.qkv_bias, reader.get_bool_or("attention_bias", true));
  config.o_bias = config.qkv_bias;
  config.attention_sinks = true;
  MS_RETURN_IF_ERROR(parse_layer_types(reader, config));
  MS_RETURN_IF_ERROR(parse_softmax_topk_moe(reader, config, "num_local_experts", "intermediate_size", false));
  MoeConfig& moe = *config.moe;
  moe.scoring = RouterScoring::kTopKSoftmax;
  moe.router_bias = true;
  moe.expert_bias = true;
  moe.clamped_swiglu = true;
  MS_ASSIGN_OR_RETURN(double limit, reader.get_positive_double_or("swiglu_limit", 7.0));
  moe.swiglu_limit = static_cast<float>(limit);
  config.layer_is_moe.assign(config.num_layers, true);
  return ok_status();
}

const ArchDefinition& gpt_oss_definition() {
  static const ArchDefinition definition{"GptOssForCausalLM", Architecture::kGptOss, parse_gpt_oss};
  return definition;
}

}  // namespace moeserve
