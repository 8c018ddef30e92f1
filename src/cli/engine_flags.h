// Engine flags shared by the commands that load a model (logits, generate, later serve and
// bench), with vLLM's names and meanings: --dtype, --load-format, --hf-overrides, --seed,
// --device. Parsed into LoadOptions; unsupported values are refused by name.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "runtime/loaded_model.h"

namespace moeserve::cli {

struct EngineFlags {
  std::string model_dir;
  std::string dtype = "auto";
  std::string load_format = "auto";
  std::string hf_overrides = "{}";
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;

  // Registers the positional MODEL_DIR and the flags above on `command`.
  void add_to(CLI::App& command);
  Result<LoadOptions> load_options() const;
};

// Parses "1,2,3" into token ids.
Result<std::vector<int32_t>> parse_id_list(const std::string& text);

}  // namespace moeserve::cli
