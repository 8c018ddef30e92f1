// The explicit table of supported architectures. Each family lives in archs/<family>.cpp and
// contributes one ArchDefinition: how its config.json maps onto ModelConfig beyond the common
// fields. Its checkpoint's tensors are declared in model/weight_plan.cpp, and every family runs
// the one decoder loop (model/decoder_loop.h); an architecture never re-implements it.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "model/config.h"
#include "model/config_reader.h"

namespace moeserve {

struct ArchDefinition {
  std::string_view hf_name;  // config.json "architectures"[0]
  Architecture architecture;
  // Fills the family-specific fields (routing, MLA, MoE layer pattern, biases) after the
  // common ones (sizes, norms, rope, token ids) are parsed.
  Status (*parse_config)(const ConfigReader& reader, ModelConfig& config);
};

std::span<const ArchDefinition* const> architecture_table();
const ArchDefinition* find_architecture(std::string_view hf_name);
const ArchDefinition& architecture_definition(Architecture architecture);

// archs/*.cpp
const ArchDefinition& mixtral_definition();
const ArchDefinition& qwen2_moe_definition();
const ArchDefinition& qwen3_moe_definition();
const ArchDefinition& deepseek_v2_definition();
const ArchDefinition& deepseek_v3_definition();
const ArchDefinition& deepseek_v32_definition();
const ArchDefinition& llama_definition();
const ArchDefinition& mistral_definition();
const ArchDefinition& qwen2_definition();
const ArchDefinition& qwen3_definition();
const ArchDefinition& gpt_oss_definition();
const ArchDefinition& llama4_definition();

}  // namespace moeserve
