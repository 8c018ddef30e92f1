#include "model/registry.h"

#include <array>

#include "base/check.h"

namespace moeserve {

std::span<const ArchDefinition* const> architecture_table() {
  static const std::array<const ArchDefinition*, 12> table = {
      &mixtral_definition(),     &qwen2_moe_definition(),    &qwen3_moe_definition(),
      &deepseek_v2_definition(), &deepseek_v3_definition(),  &deepseek_v32_definition(),
      &llama_definition(),       &mistral_definition(),      &qwen2_definition(),
      &qwen3_definition(),       &gpt_oss_definition(),      &llama4_definition()};
  return table;
}

const ArchDefinition* find_architecture(std::string_view hf_name) {
  for (const ArchDefinition* definition : architecture_table()) {
    if (definition->hf_name == hf_name) return definition;
  }
  return nullptr;
}

const ArchDefinition& architecture_definition(Architecture architecture) {
  for (const ArchDefinition* definition : architecture_table()) {
    if (definition->architecture == architecture) return *definition;
  }
  MS_CHECK(false);
  return *architecture_table()[0];
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const ArchDefinition* definition : architecture_table()) names.emplace_back(definition->hf_name);
  return names;
}

}  // namespace moeserve
