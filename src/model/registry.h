// The explicit table of supported architectures. Each family lives in archs/<family>.cpp and
// contributes one ArchDefinition: how its config.json maps onto ModelConfig beyond the common
// fields, and how its checkpoint names the MoE block's tensors. The layers themselves are
// shared (model/layers/); an architecture never re-implements the decoder loop.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "model/config.h"
#include "model/config_reader.h"

namespace moeserve {

// Tensor names inside `model.layers.{i}.` that differ between families.
struct WeightNames {
  std::string moe_block;      // "block_sparse_moe" (Mixtral) or "mlp"
  std::string expert_gate;    // "w1" or "gate_proj"
  std::string expert_up;      // "w3" or "up_proj"
  std::string expert_down;    // "w2" or "down_proj"
  std::string shared_expert;  // "shared_expert" (Qwen2-MoE) or "shared_experts" (DeepSeek)
};

struct ArchDefinition {
  std::string_view hf_name;  // config.json "architectures"[0]
  Architecture architecture;
  // Fills the family-specific fields (routing, MLA, MoE layer pattern, biases) after the
  // common ones (sizes, norms, rope, token ids) are parsed.
  Status (*parse_config)(const ConfigReader& reader, ModelConfig& config);
  WeightNames names;
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
const ArchDefinition& llama_definition();
const ArchDefinition& mistral_definition();
const ArchDefinition& qwen2_definition();
const ArchDefinition& qwen3_definition();

}  // namespace moeserve
