#include "server/generation_config.h"

#include <filesystem>

#include "loader/json_file.h"

namespace moeserve {

namespace {

template <typename T>
Status read_optional(const nlohmann::json& json, const std::string& path, const char* field, std::optional<T>& out) {
  const auto it = json.find(field);
  if (it == json.end() || it->is_null()) return ok_status();
  if (!it->is_number()) return make_error("{}: '{}' must be a number, got {}", path, field, it->dump());
  out = it->get<T>();
  return ok_status();
}

}  // namespace

Result<GenerationConfig> load_generation_config(const std::string& setting, const std::string& model_dir,
                                                const ModelConfig& config) {
  GenerationConfig out;
  out.eos_token_ids.assign(config.eos_token_ids.begin(), config.eos_token_ids.end());
  if (setting == "vllm") return out;
  const std::filesystem::path dir = setting == "auto" ? std::filesystem::path(model_dir) : std::filesystem::path(setting);
  const std::filesystem::path file = dir / "generation_config.json";
  if (!std::filesystem::exists(file)) {
    if (setting == "auto") return out;
    return make_error("--generation-config {}: no generation_config.json there", setting);
  }
  const std::string path = file.string();
  MS_ASSIGN_OR_RETURN(nlohmann::json json, read_json_file(path));
  if (!json.is_object()) return make_error("{}: not a JSON object", path);
  SamplingDefaults& sampling = out.sampling;
  MS_RETURN_IF_ERROR(read_optional(json, path, "temperature", sampling.temperature));
  MS_RETURN_IF_ERROR(read_optional(json, path, "top_p", sampling.top_p));
  MS_RETURN_IF_ERROR(read_optional(json, path, "top_k", sampling.top_k));
  MS_RETURN_IF_ERROR(read_optional(json, path, "min_p", sampling.min_p));
  MS_RETURN_IF_ERROR(read_optional(json, path, "repetition_penalty", sampling.repetition_penalty));
  MS_RETURN_IF_ERROR(read_optional(json, path, "max_new_tokens", sampling.max_new_tokens));
  if (const auto eos = json.find("eos_token_id"); eos != json.end() && !eos->is_null()) {
    if (eos->is_number_integer()) {
      out.eos_token_ids = {eos->get<int32_t>()};
    } else if (eos->is_array()) {
      out.eos_token_ids.clear();
      for (const auto& id : *eos) {
        if (!id.is_number_integer()) return make_error("{}: 'eos_token_id' must hold integers, got {}", path, id.dump());
        out.eos_token_ids.push_back(id.get<int32_t>());
      }
    } else {
      return make_error("{}: 'eos_token_id' must be an integer or a list, got {}", path, eos->dump());
    }
  }
  return out;
}

}  // namespace moeserve
