// Common config.json parsing: sizes, norms, token ids, dtype, RoPE (both the rope_theta +
// rope_scaling form and transformers ≥ 5's rope_parameters), then the family's own fields.
#include "model/config.h"

#include <cmath>
#include <filesystem>

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
  if (it->is_number_integer()) {
    ids.push_back(it->get<int>());
  } else if (it->is_array()) {
    for (const Json& id : *it) {
      if (!id.is_number_integer()) return make_error("config.json: '{}' must hold integers, got {}", key, it->dump());
      ids.push_back(id.get<int>());
    }
  } else {
    return make_error("config.json: '{}' must be an integer or a list, got {}", key, it->dump());
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
  if (json.contains("rope_parameters") && json["rope_parameters"].is_object()) {
    params = json["rope_parameters"];
  } else if (json.contains("rope_scaling") && json["rope_scaling"].is_object()) {
    params = json["rope_scaling"];
  } else if (json.contains("rope_scaling") && !json["rope_scaling"].is_null()) {
    return make_error("config.json: 'rope_scaling' must be an object or null, got {}", json["rope_scaling"].dump());
  }
  const ConfigReader outer(json);
  const ConfigReader reader(params);
  MS_ASSIGN_OR_RETURN(rope.theta, outer.get_double_or("rope_theta", 10000.0));
  MS_ASSIGN_OR_RETURN(rope.theta, reader.get_double_or("rope_theta", rope.theta));
  MS_ASSIGN_OR_RETURN(std::string type, reader.get_string_or("type", "default"));
  MS_ASSIGN_OR_RETURN(type, reader.get_string_or("rope_type", type));
  MS_ASSIGN_OR_RETURN(rope.factor, reader.get_double_or("factor", 1.0));
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
    MS_ASSIGN_OR_RETURN(rope.beta_fast, reader.get_double_or("beta_fast", 32.0));
    MS_ASSIGN_OR_RETURN(rope.beta_slow, reader.get_double_or("beta_slow", 1.0));
    MS_ASSIGN_OR_RETURN(rope.mscale, reader.get_double_or("mscale", 0.0));
    MS_ASSIGN_OR_RETURN(rope.mscale_all_dim, reader.get_double_or("mscale_all_dim", 0.0));
    MS_ASSIGN_OR_RETURN(rope.truncate, reader.get_bool_or("truncate", true));
    if (reader.has("attention_factor")) {
      MS_ASSIGN_OR_RETURN(double factor, reader.get_double_or("attention_factor", 1.0));
      rope.attention_factor = factor;
    }
  } else if (type == "llama3") {
    rope.kind = RopeKind::kLlama3;
    MS_ASSIGN_OR_RETURN(rope.original_max_position, reader.get_int_or("original_max_position_embeddings", 0));
    MS_ASSIGN_OR_RETURN(rope.low_freq_factor, reader.get_double_or("low_freq_factor", 1.0));
    MS_ASSIGN_OR_RETURN(rope.high_freq_factor, reader.get_double_or("high_freq_factor", 4.0));
    if (rope.original_max_position <= 0) {
      return make_error("config.json: llama3 rope needs a positive original_max_position_embeddings");
    }
  } else {
    return make_error("config.json: rope type '{}' is not supported (supported: default, linear, yarn, llama3)", type);
  }
  if (!(rope.theta > 0) || !(rope.factor > 0)) return make_error("config.json: rope_theta and rope factor must be positive");
  return ok_status();
}

Status parse_common(const ConfigReader& reader, ModelConfig& config) {
  MS_ASSIGN_OR_RETURN(config.vocab_size, reader.get_int("vocab_size"));
  MS_ASSIGN_OR_RETURN(config.hidden_size, reader.get_int("hidden_size"));
  MS_ASSIGN_OR_RETURN(config.intermediate_size, reader.get_int_or("intermediate_size", 0));
  MS_ASSIGN_OR_RETURN(config.num_layers, reader.get_int("num_hidden_layers"));
  MS_ASSIGN_OR_RETURN(config.num_heads, reader.get_int("num_attention_heads"));
  MS_ASSIGN_OR_RETURN(config.num_kv_heads, reader.get_int_or("num_key_value_heads", config.num_heads));
  MS_ASSIGN_OR_RETURN(config.head_dim, reader.get_int_or("head_dim", config.hidden_size / config.num_heads));
  if (config.head_dim <= 0) return make_error("config.json: head_dim must be positive");
  MS_ASSIGN_OR_RETURN(double eps, reader.get_double_or("rms_norm_eps", 1e-6));
  config.rms_norm_eps = static_cast<float>(eps);
  MS_ASSIGN_OR_RETURN(config.tie_word_embeddings, reader.get_bool_or("tie_word_embeddings", false));
  MS_ASSIGN_OR_RETURN(config.max_position_embeddings, reader.get_int_or("max_position_embeddings", 4096));
  MS_ASSIGN_OR_RETURN(config.dtype, read_dtype(reader));
  MS_ASSIGN_OR_RETURN(config.bos_token_ids, read_token_ids(reader.raw(), "bos_token_id"));
  MS_ASSIGN_OR_RETURN(config.eos_token_ids, read_token_ids(reader.raw(), "eos_token_id"));
  MS_ASSIGN_OR_RETURN(std::string act, reader.get_string_or("hidden_act", "silu"));
  if (act != "silu") return make_error("config.json: hidden_act '{}' is not supported (supported: silu)", act);
  MS_RETURN_IF_ERROR(parse_rope(reader.raw(), config.rope));
  config.rope.rotary_dim = config.head_dim;
  config.attention_scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  if (reader.has("quantization_config")) {
    const Json& quant = reader.raw().at("quantization_config");
    const std::string method = quant.value("quant_method", "");
    if (method != "fp8") {
      return make_error("config.json: quantization method '{}' is not supported (supported: fp8)", method);
    }
    std::array<int, 2> block{0, 0};
    if (quant.contains("weight_block_size") && quant["weight_block_size"].is_array() &&
        quant["weight_block_size"].size() == 2) {
      block = {quant["weight_block_size"][0].get<int>(), quant["weight_block_size"][1].get<int>()};
    }
    config.fp8_block_size = block;
  }
  return ok_status();
}

}  // namespace

Result<ModelConfig> parse_model_config(const Json& config_json, const Json& overrides) {
  if (!config_json.is_object()) return make_error("config.json: not a JSON object");
  if (!overrides.is_object()) return make_error("--hf-overrides must be a JSON object, got {}", overrides.dump());
  Json merged = config_json;
  merged.merge_patch(overrides);

  const auto archs = merged.find("architectures");
  if (archs == merged.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return make_error("config.json: 'architectures' must list the model class (supported: {})",
                      fmt::join(supported_architectures(), ", "));
  }
  const std::string name = (*archs)[0].get<std::string>();
  const ArchDefinition* definition = find_architecture(name);
  if (definition == nullptr) {
    return make_error("config.json: architecture '{}' is not supported (supported: {})", name,
                      fmt::join(supported_architectures(), ", "));
  }
  ModelConfig config;
  config.architecture = definition->architecture;
  config.architecture_name = name;
  const ConfigReader reader(merged);
  MS_RETURN_IF_ERROR(parse_common(reader, config));
  config.layer_is_moe.assign(config.num_layers, false);
  MS_RETURN_IF_ERROR(definition->parse_config(reader, config));
  // After the family's fields: MLA replaces num_key_value_heads with one shared latent.
  if (config.num_kv_heads <= 0 || config.num_heads % config.num_kv_heads != 0) {
    return make_error("config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                      config.num_heads, config.num_kv_heads);
  }
  return config;
}

Result<ModelConfig> load_model_config(const std::string& dir_or_file, const Json& overrides) {
  namespace fs = std::filesystem;
  const fs::path path = fs::is_directory(dir_or_file) ? fs::path(dir_or_file) / "config.json" : fs::path(dir_or_file);
  MS_ASSIGN_OR_RETURN(Json json, read_json_file(path.string()));
  auto config = parse_model_config(json, overrides);
  if (!config.ok()) return config.error().with_context(path.string());
  return config;
}

Error fp8_unsupported_error(const char* backend) {
  return make_error(
      "this checkpoint is fp8-quantized (quantization_config.quant_method fp8), which the {} backend does not serve "
      "yet; to run its shape with random bf16 weights, pass --load-format dummy --hf-overrides "
      "'{{\"quantization_config\": null}}'",
      backend);
}

}  // namespace moeserve
