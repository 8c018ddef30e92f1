#include "cli/engine_flags.h"

#include <charconv>

namespace moeserve::cli {

void EngineFlags::add_to(CLI::App& command) {
  command.add_option("model", model_dir, "Model directory (Hugging Face layout: config.json + safetensors)")
      ->required();
  command.add_option("--dtype", dtype, "Weight/activation dtype (CPU computes in float32 from the stored weights)")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "float32", "half", "float"}));
  command.add_option("--load-format", load_format, "auto: read the checkpoint; dummy: random weights of its shape")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
  command.add_option("--hf-overrides", hf_overrides, "JSON merged into config.json, e.g. '{\"num_hidden_layers\": 8}'");
  command.add_option("--seed", seed, "Random seed (sampling, dummy weights)");
  command.add_option("--device", device, "Device to run on (cuda: the first GPU; needs a CUDA build)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_option("--threads", threads, "CPU worker threads (0 = all cores)");
}

Result<LoadOptions> EngineFlags::load_options() const {
  LoadOptions options;
  options.hf_overrides = nlohmann::json::parse(hf_overrides, nullptr, /*allow_exceptions=*/false);
  if (options.hf_overrides.is_discarded() || !options.hf_overrides.is_object()) {
    return make_error("--hf-overrides must be a JSON object, got '{}'", hf_overrides);
  }
  options.load_format = load_format == "dummy" ? LoadFormat::kDummy : LoadFormat::kAuto;
  options.seed = seed;
  return options;
}

Result<std::vector<int32_t>> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    int32_t value = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size()) {
      return make_error("'{}' is not a comma-separated list of token ids", text);
    }
    ids.push_back(value);
    begin = end + 1;
  }
  return ids;
}

}  // namespace moeserve::cli
