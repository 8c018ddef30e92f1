// DeepSeek-V2, DeepSeek-V3 (also Kimi K2) and DeepSeek-V3.2: MLA attention (optional q-LoRA, compressed KV
// latent + a shared rope key, interleaved rope, YaRN mscale² folded into the softmax scale),
// the first `first_k_dense_replace` layers dense, then MoE every `moe_layer_freq` layers with
// shared experts. V2 routes by softmax (greedy or group-limited by group max); V3 by sigmoid
// with e_score_correction_bias for selection only, groups scored by their top-2 sum. V3.2 is V3
// plus the lightning indexer (IndexerConfig: index_n_heads, index_head_dim, index_topk), whose
// queries come from the q latent, so it needs q-LoRA.
#include <cmath>
#include <cstdint>

#include "model/archs/arch_common.h"
#include "model/registry.h"

namespace moeserve {
namespace {

double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

Status parse_mla(const ConfigReader& reader, ModelConfig& config) {
  MlaConfig mla;
  MS_ASSIGN_OR_RETURN(mla.q_lora_rank, reader.get_non_negative_int_or("q_lora_rank", 0));
  MS_ASSIGN_OR_RETURN(mla.kv_lora_rank, reader.get_int("kv_lora_rank"));
  MS_ASSIGN_OR_RETURN(mla.qk_nope_head_dim, reader.get_int("qk_nope_head_dim"));
  MS_ASSIGN_OR_RETURN(mla.qk_rope_head_dim, reader.get_int("qk_rope_head_dim"));
  MS_ASSIGN_OR_RETURN(mla.v_head_dim, reader.get_int("v_head_dim"));
  if (mla.qk_rope_head_dim % 2 != 0) return make_error("config.json: qk_rope_head_dim must be even");
  config.mla = mla;
  config.head_dim = mla.qk_head_dim();
  config.num_kv_heads = config.num_heads;  // every head reads the one shared latent
  config.rope.rotary_dim = mla.qk_rope_head_dim;
  config.rope.layout = RopeLayout::kInterleaved;
  double scale = 1.0 / std::sqrt(static_cast<double>(mla.qk_head_dim()));
  if (config.rope.kind == RopeKind::kYarn && config.rope.mscale_all_dim != 0.0) {
    const double m = yarn_mscale(config.rope.factor, config.rope.mscale_all_dim);
    scale *= m * m;
  }
  config.attention_scale = static_cast<float>(scale);
  MS_ASSIGN_OR_RETURN(bool attention_bias, reader.get_bool_or("attention_bias", false));
  if (attention_bias) return make_error("config.json: attention_bias=true is not supported for MLA");
  return ok_status();
}

Status parse_deepseek_moe(const ConfigReader& reader, ModelConfig& config, bool is_v3) {
  if (!reader.has("n_routed_experts")) return ok_status();  // a dense DeepSeek
  MoeConfig moe;
  MS_ASSIGN_OR_RETURN(moe.num_experts, reader.get_int("n_routed_experts"));
  MS_ASSIGN_OR_RETURN(moe.top_k, reader.get_int("num_experts_per_tok"));
  MS_ASSIGN_OR_RETURN(moe.expert_intermediate_size, reader.get_int("moe_intermediate_size"));
  MS_ASSIGN_OR_RETURN(int shared_count, reader.get_non_negative_int_or("n_shared_experts", 0));
  const int64_t shared_size = int64_t{shared_count} * moe.expert_intermediate_size;
  if (shared_size > INT32_MAX) {
    return make_error("config.json: n_shared_experts {} x moe_intermediate_size {} is too large", shared_count,
                      moe.expert_intermediate_size);
  }
  moe.shared_intermediate_size = static_cast<int>(shared_size);
  MS_ASSIGN_OR_RETURN(moe.num_groups, reader.get_positive_int_or("n_group", 1));
  MS_ASSIGN_OR_RETURN(moe.topk_groups, reader.get_positive_int_or("topk_group", 1));
  MS_ASSIGN_OR_RETURN(double scaling, reader.get_positive_double_or("routed_scaling_factor", 1.0));
  moe.routed_scaling_factor = static_cast<float>(scaling);
  MS_ASSIGN_OR_RETURN(moe.norm_topk_prob, reader.get_bool_or("norm_topk_prob", is_v3));
  MS_ASSIGN_OR_RETURN(std::string scoring, reader.get_string_or("scoring_func", is_v3 ? "sigmoid" : "softmax"));
  MS_ASSIGN_OR_RETURN(std::string method, reader.get_string_or("topk_method", is_v3 ? "noaux_tc" : "greedy"));
  if (scoring == "softmax") {
    moe.scoring = RouterScoring::kSoftmax;
  } else if (scoring == "sigmoid") {
    moe.scoring = RouterScoring::kSigmoid;
  } else {
    return make_error("config.json: scoring_func '{}' is not supported (supported: softmax, sigmoid)", scoring);
  }
  if (method == "greedy") {
    moe.selection = RouterSelection::kTopK;
  } else if (method == "group_limited_greedy") {
    moe.selection = RouterSelection::kGroupLimitedMax;
  } else if (method == "noaux_tc") {
    moe.selection = RouterSelection::kGroupLimitedTop2Sum;
    moe.has_score_correction_bias = true;
  } else {
    return make_error("config.json: topk_method '{}' is not supported (supported: greedy, group_limited_greedy, "
                      "noaux_tc)", method);
  }
  if (moe.num_groups <= 0 || moe.num_experts % moe.num_groups != 0 || moe.topk_groups > moe.num_groups ||
      moe.topk_groups <= 0) {
    return make_error("config.json: n_group {} / topk_group {} do not divide {} experts", moe.num_groups,
                      moe.topk_groups, moe.num_experts);
  }
  if (moe.top_k > moe.topk_groups * (moe.num_experts / moe.num_groups)) {
    return make_error("config.json: num_experts_per_tok {} exceeds the experts in {} kept groups", moe.top_k,
                      moe.topk_groups);
  }
  config.moe = moe;
  MS_ASSIGN_OR_RETURN(int first_dense, reader.get_non_negative_int_or("first_k_dense_replace", 0));
  MS_ASSIGN_OR_RETURN(int layer_freq, reader.get_positive_int_or("moe_layer_freq", 1));
  for (int layer = 0; layer < config.num_layers; ++layer) {
    config.layer_is_moe[layer] = layer >= first_dense && layer % layer_freq == 0;
  }
  return ok_status();
}

Status parse_deepseek(const ConfigReader& reader, ModelConfig& config, bool is_v3) {
  MS_RETURN_IF_ERROR(parse_mla(reader, config));
  MS_RETURN_IF_ERROR(parse_deepseek_moe(reader, config, is_v3));
  MS_ASSIGN_OR_RETURN(config.num_mtp_layers, reader.get_non_negative_int_or("num_nextn_predict_layers", 0));
  return ok_status();
}

Status parse_v2(const ConfigReader& reader, ModelConfig& config) { return parse_deepseek(reader, config, false); }
Status parse_v3(const ConfigReader& reader, ModelConfig& config) { return parse_deepseek(reader, config, true); }

Status parse_v32(const ConfigReader& reader, ModelConfig& config) {
  MS_RETURN_IF_ERROR(parse_deepseek(reader, config, true));
  IndexerConfig indexer;
  MS_ASSIGN_OR_RETURN(indexer.heads, reader.get_int("index_n_heads"));
  MS_ASSIGN_OR_RETURN(indexer.head_dim, reader.get_int("index_head_dim"));
  MS_ASSIGN_OR_RETURN(indexer.topk, reader.get_int("index_topk"));
  MlaConfig& mla = *config.mla;
  if (mla.q_lora_rank == 0) return make_error("config.json: the indexer reads the q latent: q_lora_rank must be set");
  if (indexer.head_dim < mla.qk_rope_head_dim) {
    return make_error("config.json: index_head_dim {} is smaller than qk_rope_head_dim {}, which it rotates",
                      indexer.head_dim, mla.qk_rope_head_dim);
  }
  mla.indexer = indexer;
  return ok_status();
}

}  // namespace

const ArchDefinition& deepseek_v32_definition() {
  static const ArchDefinition definition{"DeepseekV32ForCausalLM", Architecture::kDeepseekV32, parse_v32};
  return definition;
}

const ArchDefinition& deepseek_v2_definition() {
  static const ArchDefinition definition{"DeepseekV2ForCausalLM", Architecture::kDeepseekV2, parse_v2};
  return definition;
}

const ArchDefinition& deepseek_v3_definition() {
  static const ArchDefinition definition{"DeepseekV3ForCausalLM", Architecture::kDeepseekV3, parse_v3};
  return definition;
}

}  // namespace moeserve
