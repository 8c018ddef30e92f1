#include "runtime/loaded_model.h"

#include <filesystem>

#include "loader/checkpoint.h"
#include "loader/dummy_weights.h"
#include "loader/kv_cache_scales.h"
#include "loader/json_file.h"

namespace moeserve {

WeightPrecision::Float32 float32_weights(ActivationDType dtype) {
  switch (dtype) {
    case ActivationDType::kAuto:
      return WeightPrecision::Float32::kAuto;
    case ActivationDType::kFloat32:
      return WeightPrecision::Float32::kKeep;
    case ActivationDType::kBFloat16:
    case ActivationDType::kFloat16:
      return WeightPrecision::Float32::kRound;
  }
  return WeightPrecision::Float32::kAuto;
}

Result<LoadedModel> load_model(const std::string& model_dir, const LoadOptions& options) {
  MS_ASSIGN_OR_RETURN(ModelConfig config, load_model_config(model_dir, options.hf_overrides));
  return load_model(model_dir, config, options);
}

Result<std::unique_ptr<WeightSource>> open_weights(const std::string& model_dir, const LoadOptions& options) {
  if (options.load_format == LoadFormat::kDummy) return std::unique_ptr<WeightSource>(new DummyWeights(options.seed));
  MS_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(model_dir));
  MS_RETURN_IF_ERROR(check_kv_cache_scales(checkpoint, options.kv_cache_fp8));
  return std::unique_ptr<WeightSource>(new Checkpoint(std::move(checkpoint)));
}

Result<LoadedModel> load_model(const std::string& model_dir, const ModelConfig& config, const LoadOptions& options) {
  LoadedModel loaded;
  MS_ASSIGN_OR_RETURN(loaded.weights, open_weights(model_dir, options));
  MS_ASSIGN_OR_RETURN(loaded.model, CpuModel::load(config, *loaded.weights, options.model));
  return loaded;
}

std::vector<int32_t> load_eos_token_ids(const std::string& model_dir, const ModelConfig& config) {
  std::vector<int32_t> ids(config.eos_token_ids.begin(), config.eos_token_ids.end());
  const auto path = std::filesystem::path(model_dir) / "generation_config.json";
  if (!std::filesystem::exists(path)) return ids;
  auto json = read_json_file(path.string());
  if (!json.ok() || !json->contains("eos_token_id")) return ids;
  const nlohmann::json& eos = (*json)["eos_token_id"];
  if (eos.is_number_integer()) return {eos.get<int32_t>()};
  if (eos.is_array()) {
    ids.clear();
    for (const auto& id : eos) {
      if (id.is_number_integer()) ids.push_back(id.get<int32_t>());
    }
  }
  return ids;
}

}  // namespace moeserve
