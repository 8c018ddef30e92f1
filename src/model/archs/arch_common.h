// Config-parsing pieces shared by several architecture files.
#pragma once

#include "model/config.h"
#include "model/config_reader.h"

namespace moeserve {

// sliding_window (Mistral/Mixtral), or use_sliding_window + sliding_window (Qwen).
Status parse_sliding_window(const ConfigReader& reader, ModelConfig& config, bool gated_by_use_flag);

// Softmax → top-k (→ renormalise) router over `num_experts_key` experts, as Mixtral and Qwen
// MoE route. `norm_default` is the family's default for norm_topk_prob.
Status parse_softmax_topk_moe(const ConfigReader& reader, ModelConfig& config, const char* num_experts_key,
                              const char* intermediate_key, bool norm_default);

// Qwen2/3-MoE's layer pattern: MoE unless in mlp_only_layers, every decoder_sparse_step-th layer.
Status mark_qwen_moe_layers(const ConfigReader& reader, ModelConfig& config);

}  // namespace moeserve
