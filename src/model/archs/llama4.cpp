// Llama 4 (Scout, Maverick; text): GQA attention in the iRoPE pattern — chunked local attention
// (attention_chunk_size) on the rope layers, every no_rope_layer_interval-th layer NoPE with full
// attention and attention-temperature tuning, L2 QK-norm on the rope layers, interleaved
// (complex) rope with Llama-3 scaling — and MoE on the moe_layers (or every
// interleave_moe_layer_step-th layer), dense SwiGLU (intermediate_size_mlp) elsewhere. The MoE
// block routes top-k by the router logits, weights = sigmoid(logit), scales each routed expert's
// input by its weight, and adds the always-on shared expert (intermediate_size). Experts are
// stored fused (`feed_forward.experts.gate_up_proj` [E, hidden, 2I], `down_proj` [E, I, hidden]).
// The multimodal Llama4ForConditionalGeneration configs reach here with their text_config
// (model/config.cpp; tensor names under language_model.).
#include <cstdint>
#include <string>
#include <vector>

#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

// out ← the per-layer list `key` (num_layers entries), each entry mapped by to_bool (nullopt: refused,
// naming `expected`).
template <typename Fn>
Status read_layer_list(const ConfigReader& reader, const char* key, int num_layers, std::vector<bool>& out,
                       const char* expected, Fn to_bool) {
  const Json& list = reader.raw().at(key);
  if (!list.is_array() || static_cast<int64_t>(list.size()) != num_layers) {
    return make_error("config.json: '{}' must list {} per layer ({} entries), got {}", key, expected, num_layers,
                      json_excerpt(list));
  }
  out.assign(num_layers, false);
  for (int layer = 0; layer < num_layers; ++layer) {
    const std::optional<bool> value = to_bool(list[layer]);
    if (!value) {
      return make_error("config.json: '{}' entry {} must be {}, got {}", key, layer, expected,
                        json_excerpt(list[layer]));
    }
    out[layer] = *value;
  }
  return ok_status();
}

Status parse_llama4_attention(const ConfigReader& reader, ModelConfig& config) {
  const int layers = config.num_layers;
  MS_ASSIGN_OR_RETURN(bool attention_bias, reader.get_bool_or("attention_bias", false));
  if (attention_bias) return make_error("config.json: attention_bias=true is not supported for Llama 4");
  // no_rope_layers[i] == 1: layer i applies rope (0: NoPE). Default: NoPE every interval-th layer.
  MS_ASSIGN_OR_RETURN(int interval, reader.get_positive_int_or("no_rope_layer_interval", 4));
  std::vector<bool> uses_rope(layers);
  for (int layer = 0; layer < layers; ++layer) uses_rope[layer] = (layer + 1) % interval != 0;
  const bool listed = reader.has("no_rope_layers") && !(reader.raw().at("no_rope_layers").is_array() &&
                                                          reader.raw().at("no_rope_layers").empty());
  if (listed) {
    MS_RETURN_IF_ERROR(read_layer_list(reader, "no_rope_layers", layers, uses_rope, "0 or 1",
                                       [](const Json& v) -> std::optional<bool> {
                                         if (v.is_boolean()) return v.get<bool>();
                                         if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) {
                                           return v.get<int64_t>() == 1;
                                         }
                                         return std::nullopt;
                                       }));
  }
  config.layer_nope.assign(layers, false);
  for (int layer = 0; layer < layers; ++layer) config.layer_nope[layer] = !uses_rope[layer];
  // layer_types: "chunked_attention" or "full_attention"; default chunked on the rope layers.
  config.layer_chunked = uses_rope;
  if (reader.has("layer_types")) {
    MS_RETURN_IF_ERROR(read_layer_list(reader, "layer_types", layers, config.layer_chunked,
                                       "\"chunked_attention\" or \"full_attention\"",
                                       [](const Json& v) -> std::optional<bool> {
                                         if (!v.is_string()) return std::nullopt;
                                         if (v.get<std::string>() == "chunked_attention") return true;
                                         if (v.get<std::string>() == "full_attention") return false;
                                         return std::nullopt;
                                       }));
  }
  // An explicit null attention_chunk_size: every layer attends fully (transformers' chunked mask is
  // then the causal one); absent: 8192.
  const bool chunk_null = reader.raw().contains("attention_chunk_size") && !reader.has("attention_chunk_size");
  MS_ASSIGN_OR_RETURN(config.attention_chunk_size, reader.get_positive_int_or("attention_chunk_size", 8192));
  if (chunk_null) config.attention_chunk_size = 0;
  if (config.attention_chunk_size == 0) config.layer_chunked.assign(layers, false);
  MS_ASSIGN_OR_RETURN(config.qk_l2_norm, reader.get_bool_or("use_qk_norm", true));
  // A bool, or as the published Scout/Maverick configs write it, a number (4): on when non-zero.
  bool temperature = true;
  if (reader.has("attn_temperature_tuning") && reader.raw().at("attn_temperature_tuning").is_number()) {
    MS_ASSIGN_OR_RETURN(double value, reader.get_double_or("attn_temperature_tuning", 1.0));
    temperature = value != 0.0;
  } else {
    MS_ASSIGN_OR_RETURN(temperature, reader.get_bool_or("attn_temperature_tuning", true));
  }
  if (temperature) {
    MS_ASSIGN_OR_RETURN(double floor_scale, reader.get_positive_double_or("floor_scale", 8192.0));
    MS_ASSIGN_OR_RETURN(double attn_scale, reader.get_double_or("attn_scale", 0.1));
    config.attn_temperature_floor = static_cast<float>(floor_scale);
    config.attn_temperature_scale = static_cast<float>(attn_scale);
  }
  // Rope on (x[2i], x[2i+1]) pairs: transformers applies it as complex multiplication.
  config.rope.layout = RopeLayout::kInterleaved;
  return ok_status();
}

Status parse_llama4_moe(const ConfigReader& reader, ModelConfig& config) {
  const int layers = config.num_layers;
  MS_ASSIGN_OR_RETURN(bool mlp_bias, reader.get_bool_or("mlp_bias", false));
  if (mlp_bias) return make_error("config.json: mlp_bias=true is not supported");
  MS_ASSIGN_OR_RETURN(std::string act, reader.get_string_or("hidden_act", "silu"));
  if (act != "silu") return make_error("config.json: hidden_act '{}' is not supported for Llama 4 (supported: silu)", act);
  // intermediate_size: each expert's and the shared expert's; intermediate_size_mlp: dense layers'.
  MS_ASSIGN_OR_RETURN(int expert_size, reader.get_positive_int_or("intermediate_size", 8192));
  MS_ASSIGN_OR_RETURN(config.intermediate_size, reader.get_positive_int_or("intermediate_size_mlp", 16384));
  MoeConfig moe;
  MS_ASSIGN_OR_RETURN(moe.num_experts, reader.get_positive_int_or("num_local_experts", 16));
  MS_ASSIGN_OR_RETURN(moe.top_k, reader.get_positive_int_or("num_experts_per_tok", 1));
  if (moe.top_k > moe.num_experts) {
    return make_error("config.json: num_experts_per_tok {} exceeds the {} experts", moe.top_k, moe.num_experts);
  }
  moe.expert_intermediate_size = expert_size;
  moe.shared_intermediate_size = expert_size;
  // Top-k by logit, weight = sigmoid(logit) (sigmoid is monotone: the same top-k), no
  // renormalisation; the weight scales the expert's input.
  moe.scoring = RouterScoring::kSigmoid;
  moe.selection = RouterSelection::kTopK;
  moe.norm_topk_prob = false;
  moe.scale_expert_input = true;
  // moe_layers, else every interleave_moe_layer_step-th layer (step - 1, 2 step - 1, ...).
  MS_ASSIGN_OR_RETURN(int step, reader.get_positive_int_or("interleave_moe_layer_step", 1));
  for (int layer = step - 1; layer < layers; layer += step) config.layer_is_moe[layer] = true;
  if (reader.has("moe_layers")) {
    const Json& list = reader.raw().at("moe_layers");
    if (!list.is_array()) return make_error("config.json: 'moe_layers' must be a list of layer indices");
    config.layer_is_moe.assign(layers, false);
    for (const Json& layer : list) {
      if (!layer.is_number_integer() || layer.get<int64_t>() < 0 || layer.get<int64_t>() >= layers) {
        return make_error("config.json: moe_layers entry {} is not a layer index", json_excerpt(layer));
      }
      config.layer_is_moe[static_cast<size_t>(layer.get<int64_t>())] = true;
    }
  }
  bool any_moe = false;
  for (int layer = 0; layer < layers; ++layer) any_moe = any_moe || config.layer_is_moe[layer];
  if (any_moe) config.moe = moe;
  return ok_status();
}

Status parse_llama4(const ConfigReader& reader, ModelConfig& config) {
  MS_RETURN_IF_ERROR(parse_llama4_attention(reader, config));
  return parse_llama4_moe(reader, config);
}

}  // namespace

const ArchDefinition& llama4_definition() {
  static const ArchDefinition definition{"Llama4ForCausalLM", Architecture::kLlama4, parse_llama4};
  return definition;
}

}  // namespace moeserve
