// vLLM's --generation-config: "auto" reads generation_config.json from the model directory,
// "vllm" ignores it (neutral defaults), anything else is a directory holding one. It supplies
// the sampling defaults a request's unset fields take and the EOS token ids.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "model/config.h"
#include "server/server_options.h"

namespace moeserve {

struct GenerationConfig {
  SamplingDefaults sampling;
  std::vector<int32_t> eos_token_ids;  // config.json's when generation_config.json names none
};

// A malformed file or a wrongly typed field is an error naming the file and field.
Result<GenerationConfig> load_generation_config(const std::string& setting, const std::string& model_dir,
                                                const ModelConfig& config);

}  // namespace moeserve
