// Common config.json parsing: sizes, norms, token ids, dtype, RoPE (both the rope_theta +
// rope_scaling form and transformers ≥ 5's rope_parameters), then the family's own fields.
#include "model/config.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include <fmt/ranges.h>

#include "loader/json_file.h"
#include "model/registry.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

Result<std::vector<int>> read_token_ids(const Json& json, const std::string& key) {
  std::vector<int> ids;
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return ids;
  // A token id is an index into the vocabulary: a non-negative int (get<int>() would silently
  // wrap a larger one).
  const auto is_token_id = [](const Json& id) {
    return id.is_number_unsigned() ? id.get<uint64_t>() <= uint64_t{INT32_MAX}
                                   : id.is_number_integer() && id.get<int64_t>() >= 0 &&
                                         id.get<int64_t>() <= INT32_MAX;
  };
  if (it->is_number()) {
    if (!is_token_id(*it)) return make_error("config.json: '{}' must be a token id, got {}", key, json_excerpt(*it));
    ids.push_back(static_cast<int>(it->get<int64_t>()));
  } else if (it->is_array()) {
    for (const Json& id : *it) {
      if (!is_token_id(id)) return make_error("config.json: '{}' must hold token ids, got {}", key, json_excerpt(*it));
      ids.push_back(static_cast<int>(id.get<int64_t>()));
    }
  } else {
    return make_error("config.json: '{}' must be an integer or a list, got {}", key, json_excerpt(*it));
  }
  return ids;
}

Result<DType> read_dtype(const ConfigReader& reader) {
  MS_ASSIGN_OR_RETURN(std::string name, reader.get_string_or("torch_dtype", "bfloat16"));
  if (reader.has("dtype")) {
    MS_ASSIGN_OR_RETURN(name, reader.get_string_or("dtype", name));
  }
  if (name == "bfloat16" || name == "auto") return DType::kBF16;
  if (name == "float16") return DType::kF16;
  if (name == "float32") return DType::kF32;
  return make_error("config.json: torch_dtype '{}' is not supported (supported: bfloat16, float16, float32)", name);
}

// The rope dict: rope_parameters (transformers ≥ 5) or rope_scaling, plus rope_theta.
Status parse_rope(const Json& json, RopeConfig& rope) {
  Json params = Json::object();
  std::string params_name = "rope_scaling";
  for (const char* key : {"rope_scaling", "rope_parameters"}) {  // rope_parameters wins when both are set
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_object()) {
      return make_error("config.json: '{}' must be an object or null, got {}", key, json_excerpt(*it));
    }
    params = *it;
    params_name = key;
  }
  const ConfigReader outer(json);
  const ConfigReader reader(params, params_name + ".");
  MS_ASSIGN_OR_RETURN(rope.theta, outer.get_positive_double_or("rope_theta", 10000.0));
  MS_ASSIGN_OR_RETURN(rope.theta, reader.get_positive_double_or("rope_theta", rope.theta));
  MS_ASSIGN_OR_RETURN(std::string type, reader.get_string_or("type", "default"));
  MS_ASSIGN_OR_RETURN(type, reader.get_string_or("rope_type", type));
  MS_ASSIGN_OR_RETURN(rope.factor, reader.get_positive_double_or("factor", 1.0));
  if (type == "default") {
    rope.kind = RopeKind::kDefault;
  } else if (type == "linear") {
    rope.kind = RopeKind::kLinear;
  } else if (type == "yarn" || type == "deepseek_yarn") {
    rope.kind = RopeKind::kYarn;
    MS_ASSIGN_OR_RETURN(rope.original_max_position, reader.get_int_or("original_max_position_embeddings", 0));
    if (rope.original_max_position <= 0) {
      return make_error("config.json: yarn rope needs a positive original_max_position_embeddings");
    }
    MS_ASSIGN_OR_RETURN(rope.beta_fast, reader.get_positive_double_or("beta_fast", 32.0));
    MS_ASSIGN_OR_RETURN(rope.beta_slow, reader.get_positive_double_or("beta_slow", 1.0));
    MS_ASSIGN_OR_RETURN(rope.mscale, reader.get_double_or("mscale", 0.0));
    MS_ASSIGN_OR_RETURN(rope.mscale_all_dim, reader.get_double_or("mscale_all_dim", 0.0));
    MS_ASSIGN_OR_RETURN(rope.truncate, reader.get_bool_or("truncate", true));
    if (reader.has("attention_factor")) {
      MS_ASSIGN_OR_RETURN(double factor, reader.get_positive_double_or("attention_factor", 1.0));
      rope.attention_factor = factor;
    }
  } else if (type == "llama3") {
    rope.kind = RopeKind::kLlama3;
    MS_ASSIGN_OR_RETURN(rope.original_max_position, reader.get_int_or("original_max_position_embeddings", 0));
    MS_ASSIGN_OR_RETURN(rope.low_freq_factor, reader.get_positive_double_or("low_freq_factor", 1.0));
    MS_ASSIGN_OR_RETURN(rope.high_freq_factor, reader.get_positive_double_or("high_freq_factor", 4.0));
    if (rope.original_max_position <= 0) {
      return make_error("config.json: llama3 rope needs a positive original_max_position_embeddings");
    }
    // The smoothing between the two wavelengths divides by their difference.
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      return make_error("config.json: llama3 rope needs high_freq_factor ({}) above low_freq_factor ({})",
                        rope.high_freq_factor, rope.low_freq_factor);
    }
  } else {
    return make_error("config.json: rope type '{}' is not supported (supported: default, linear, yarn, llama3)", type);
  }
  return ok_status();
}

// quantization_config: {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
// "weight_block_size": [rows, cols], "scale_fmt": "ue8m0" (optional)} (block scales), or without
// weight_block_size (per-tensor scales); or {"quant_method": "mxfp4"} (GPT-OSS). Everything else
// is refused by name; it comes from config.json or --hf-overrides, so no access here may throw.
Status parse_quantization(const ConfigReader& reader, ModelConfig& config) {
  if (!reader.has("quantization_config")) return ok_status();
  const Json& quant = reader.raw().at("quantization_config");
  if (!quant.is_object()) {
    return make_error("config.json: 'quantization_config' must be an object with a quant_method, got {}",
                      json_excerpt(quant));
  }
  const ConfigReader fields(quant, "quantization_config.");
  if (!fields.has("quant_method")) {
    return make_error("config.json: 'quantization_config' has no quant_method (supported: fp8, mxfp4)");
  }
  MS_ASSIGN_OR_RETURN(const std::string method, fields.get_string_or("quant_method", ""));
  if (method == "mxfp4") {
    // GPT-OSS's published format: its fused experts only (modules_to_not_convert lists the rest).
    if (config.architecture != Architecture::kGptOss) {
      return make_error("config.json: quantization method 'mxfp4' is supported for GptOssForCausalLM's experts only, "
                        "not {}",
                        config.architecture_name);
    }
    config.mxfp4_experts = true;
    return ok_status();
  }
  if (method != "fp8") {
    return make_error("config.json: quantization method '{}' is not supported (supported: fp8, mxfp4)", method);
  }
  std::array<int, 2> block{0, 0};
  if (fields.has("weight_block_size")) {
    const Json& size = quant.at("weight_block_size");
    const auto is_block_side = [](const Json& side) {
      return side.is_number_integer() && side.get<int64_t>() > 0 && side.get<int64_t>() <= (1 << 20);
    };
    if (!size.is_array() || size.size() != 2 || !is_block_side(size[0]) || !is_block_side(size[1])) {
      return make_error("config.json: 'quantization_config.weight_block_size' must be two positive integers "
                        "[rows, cols], got {}",
                        json_excerpt(size));
    }
    block = {static_cast<int>(size[0].get<int64_t>()), static_cast<int>(size[1].get<int64_t>())};
  }
  MS_ASSIGN_OR_RETURN(const std::string fmt, fields.get_string_or("fmt", "e4m3"));
  if (fmt != "e4m3") {
    return make_error("config.json: 'quantization_config.fmt' '{}' is not supported (supported: e4m3)", fmt);
  }
  MS_ASSIGN_OR_RETURN(const std::string activations, fields.get_string_or("activation_scheme", "dynamic"));
  if (activations != "dynamic") {
    return make_error("config.json: 'quantization_config.activation_scheme' '{}' is not supported (supported: "
                      "dynamic)",
                      activations);
  }
  MS_ASSIGN_OR_RETURN(const std::string scale_fmt, fields.get_string_or("scale_fmt", "float32"));
  if (scale_fmt != "float32" && scale_fmt != "ue8m0") {
    return make_error("config.json: 'quantization_config.scale_fmt' '{}' is not supported (supported: ue8m0, or "
                      "absent for float32 scales)",
                      scale_fmt);
  }
  config.fp8_block_size = block;
  config.fp8_scale_ue8m0 = scale_fmt == "ue8m0";
  return ok_status();
}

Status parse_common(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.vocab_size, reader.get_int("vocab_size"));
  MS_ASSIGN_OR_RETURN(config.hidden_size, reader.get_int("hidden_size"));
  MS_ASSIGN_OR_RETURN(config.intermediate_size, reader.get_non_negative_int_or("intermediate_size", 0));
  MS_ASSIGN_OR_RETURN(config.num_layers, reader.get_int("num_hidden_layers"));
  MS_ASSIGN_OR_RETURN(config.num_heads, reader.get_int("num_attention_heads"));
  MS_ASSIGN_OR_RETURN(config.num_kv_heads, reader.get_positive_int_or("num_key_value_heads", config.num_heads));
  MS_ASSIGN_OR_RETURN(config.head_dim, reader.get_positive_int_or("head_dim", config.hidden_size / config.num_heads));
  if (config.head_dim <= 0) {
    return make_error("config.json: hidden_size {} is smaller than num_attention_heads {} (head_dim would be 0)",
                      config.hidden_size, config.num_heads);
  }
  MS_ASSIGN_OR_RETURN(double eps, reader.get_positive_double_or("rms_norm_eps", 1e-6));
  config.rms_norm_eps = static_cast<float>(eps);
  MS_ASSIGN_OR_RETURN(config.tie_word_embeddings, reader.get_bool_or("tie_word_embeddings", false));
  // A context of 0 (or less) would start a server that refuses every request: refuse it here.
  MS_ASSIGN_OR_RETURN(config.max_position_embeddings, reader.get_positive_int_or("max_position_embeddings", 4096));
  MS_ASSIGN_OR_RETURN(config.dtype, read_dtype(reader));
  MS_ASSIGN_OR_RETURN(config.bos_token_ids, read_token_ids(reader.raw(), "bos_token_id"));
  MS_ASSIGN_OR_RETURN(config.eos_token_ids, read_token_ids(reader.raw(), "eos_token_id"));
  MS_ASSIGN_OR_RETURN(std::string act, reader.get_string_or("hidden_act", "silu"));
  if (act != "silu") return make_error("config.json: hidden_act '{}' is not supported (supported: silu)", act);
  MS_RETURN_IF_ERROR(parse_rope(reader.raw(), config.rope));
  config.rope.rotary_dim = config.head_dim;
  config.attention_scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  return parse_quantization(reader, config);
}

}  // namespace

Result<ModelConfig> parse_model_config(const Json& config_json, const Json& overrides) {
  if (!config_json.is_object()) return make_error("config.json: not a JSON object");
  if (!overrides.is_object()) {
    return make_error("--hf-overrides must be a JSON object, got {}", json_excerpt(overrides));
  }
  Json merged = config_json;
  merged.merge_patch(overrides);

  const auto archs = merged.find("architectures");
  if (archs == merged.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return make_error("config.json: 'architectures' must list the model class (supported: {})",
                      fmt::join(supported_architectures(), ", "));
  }
  const std::string name = (*archs)[0].get<std::string>();
  const ArchDefinition* definition = find_architecture(name);
  std::string weight_prefix;
  if (name == "Llama4ForConditionalGeneration") {
    // The multimodal checkpoint: its text model (text_config, tensors under language_model.) is
    // served as Llama4ForCausalLM; the vision tower's tensors are left unread.
    const auto text = merged.find("text_config");
    if (text == merged.end() || !text->is_object()) {
      return make_error("config.json: Llama4ForConditionalGeneration needs a 'text_config' object (the text model "
                        "served), got {}", text == merged.end() ? std::string("none") : json_excerpt(*text));
    }
    Json text_config = *text;
    for (const char* key : {"tie_word_embeddings", "torch_dtype", "dtype", "quantization_config"}) {
      if (!text_config.contains(key) && merged.contains(key)) text_config[key] = merged[key];
    }
    text_config["architectures"] = Json::array({"Llama4ForCausalLM"});
    merged = std::move(text_config);
    definition = find_architecture("Llama4ForCausalLM");
    weight_prefix = "language_model.";
  }
  if (definition == nullptr) {
    return make_error("config.json: architecture '{}' is not supported (supported: {})", name,
                      fmt::join(supported_architectures(), ", "));
  }
  ModelConfig config;
  config.architecture = definition->architecture;
  config.architecture_name = name;
  config.weight_prefix = weight_prefix;
  const ConfigReader reader(merged);
  MS_RETURN_IF_ERROR(parse_common(reader, config));
  config.layer_is_moe.assign(config.num_layers, false);
  MS_RETURN_IF_ERROR(definition->parse_config(reader, config));
  // After the family's fields: MLA replaces num_key_value_heads with one shared latent.
  if (config.num_kv_heads <= 0 || config.num_heads % config.num_kv_heads != 0) {
    return make_error("config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                      config.num_heads, config.num_kv_heads);
  }
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.layer_is_moe[layer] && config.intermediate_size <= 0) {
      return make_error("config.json: layer {} is a dense MLP but intermediate_size is missing or 0", layer);
    }
  }
  return config;
}

Result<ModelConfig> load_model_config(const std::string& dir_or_file, const Json& overrides) {
  namespace fs = std::filesystem;
  std::error_code error;  // the throwing overload would abort on, e.g., a directory we may not search
  const bool is_dir = fs::is_directory(dir_or_file, error);
  const fs::path path = is_dir ? fs::path(dir_or_file) / "config.json" : fs::path(dir_or_file);
  MS_ASSIGN_OR_RETURN(Json json, read_json_file(path.string()));
  auto config = parse_model_config(json, overrides);
  if (!config.ok()) {
    // The path replaces the parser's "config.json: " rather than repeating it.
    std::string message = config.error().message;
    constexpr std::string_view kPrefix = "config.json: ";
    if (message.starts_with(kPrefix)) message.erase(0, kPrefix.size());
    return make_error("{}: {}", path.string(), message);
  }
  return config;
}

}  // namespace moeserve
