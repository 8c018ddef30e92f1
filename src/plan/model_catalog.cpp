// The catalog's config.json values. Sources: the Hugging Face model repositories' config.json
// (URLs below), read through copies in this project's search index where the original page was
// not stored; a value recalled rather than read is flagged in the entry's source.
#include "plan/model_catalog.h"

#include <algorithm>
#include <cctype>

#include <fmt/ranges.h>

namespace moeserve::plan {
namespace {

// DeepSeek-V3 (and V3.1, which keeps the architecture and adds the ue8m0 scale format).
constexpr const char* kDeepseekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
  "num_hidden_layers": 61, "num_nextn_predict_layers": 1, "num_attention_heads": 128, "num_key_value_heads": 128,
  "n_shared_experts": 1, "n_routed_experts": 256, "ep_size": 1, "routed_scaling_factor": 2.5,
  "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128,
  "topk_method": "noaux_tc", "n_group": 8, "topk_group": 4, "num_experts_per_tok": 8, "moe_layer_freq": 1,
  "first_k_dense_replace": 3, "norm_topk_prob": true, "scoring_func": "sigmoid", "hidden_act": "silu",
  "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "bos_token_id": 0, "eos_token_id": 1,
  "tie_word_embeddings": false, "rope_theta": 10000,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "attention_bias": false, "torch_dtype": "bfloat16",
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]}
})";

constexpr const char* kDeepseekV2Lite = R"({
  "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
  "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
  "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
  "n_shared_experts": 2, "n_routed_experts": 64, "ep_size": 1, "routed_scaling_factor": 1.0,
  "kv_lora_rank": 512, "q_lora_rank": null, "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128,
  "topk_method": "greedy", "n_group": 1, "topk_group": 1, "num_experts_per_tok": 6, "moe_layer_freq": 1,
  "first_k_dense_replace": 1, "norm_topk_prob": false, "scoring_func": "softmax", "hidden_act": "silu",
  "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "bos_token_id": 100000, "eos_token_id": 100001,
  "tie_word_embeddings": false, "rope_theta": 10000,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "attention_bias": false, "torch_dtype": "bfloat16"
})";

constexpr const char* kKimiK2 = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "kimi_k2",
  "vocab_size": 163840, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
  "num_hidden_layers": 61, "num_nextn_predict_layers": 0, "num_attention_heads": 64, "num_key_value_heads": 64,
  "n_shared_experts": 1, "n_routed_experts": 384, "ep_size": 1, "routed_scaling_factor": 2.827,
  "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128,
  "topk_method": "noaux_tc", "n_group": 1, "topk_group": 1, "num_experts_per_tok": 8, "moe_layer_freq": 1,
  "first_k_dense_replace": 1, "norm_topk_prob": true, "scoring_func": "sigmoid", "hidden_act": "silu",
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-06, "bos_token_id": 163584, "eos_token_id": 163585,
  "tie_word_embeddings": false, "rope_theta": 50000.0,
  "rope_scaling": {"beta_fast": 1.0, "beta_slow": 1.0, "factor": 32.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "attention_bias": false, "torch_dtype": "bfloat16",
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]}
})";

constexpr const char* kMixtral8x7B = R"({
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
  "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
  "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
  "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "router_aux_loss_coef": 0.02, "torch_dtype": "bfloat16"
})";

constexpr const char* kMixtral8x22B = R"({
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
  "vocab_size": 32768, "hidden_size": 6144, "intermediate_size": 16384, "num_hidden_layers": 56,
  "num_attention_heads": 48, "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
  "max_position_embeddings": 65536, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
  "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0, "torch_dtype": "bfloat16"
})";

constexpr const char* kQwen3_235B = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "moe_intermediate_size": 1536,
  "num_hidden_layers": 94, "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128,
  "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1,
  "mlp_only_layers": [], "max_position_embeddings": 40960, "max_window_layers": 94, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "rope_scaling": null, "attention_bias": false, "use_sliding_window": false,
  "sliding_window": null, "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 151643,
  "eos_token_id": 151645, "router_aux_loss_coef": 0.001, "torch_dtype": "bfloat16"
})";

constexpr const char* kQwen3_30B = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
  "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
  "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1,
  "mlp_only_layers": [], "max_position_embeddings": 40960, "max_window_layers": 48, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "rope_scaling": null, "attention_bias": false, "use_sliding_window": false,
  "sliding_window": null, "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 151643,
  "eos_token_id": 151645, "router_aux_loss_coef": 0.001, "torch_dtype": "bfloat16"
})";

constexpr const char* kQwen2_57B = R"({
  "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
  "vocab_size": 151936, "hidden_size": 3584, "intermediate_size": 18944, "moe_intermediate_size": 2560,
  "shared_expert_intermediate_size": 20480, "num_hidden_layers": 28, "num_attention_heads": 28,
  "num_key_value_heads": 4, "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": false,
  "decoder_sparse_step": 1, "max_position_embeddings": 131072, "max_window_layers": 21, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "use_sliding_window": false, "sliding_window": 4096, "tie_word_embeddings": false,
  "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643, "router_aux_loss_coef": 0.001,
  "torch_dtype": "bfloat16"
})";

// gpt-oss-20b and gpt-oss-120b differ only in depth and expert count. The published checkpoints
// store the experts as MXFP4 ("quantization_config": {"quant_method": "mxfp4", ...}), which one
// CUDA rank keeps as published and the CPU (and a TP or EP split) dequantizes to bf16; the planner
// counts each layout's bytes so (MemoryModel::keeps_mxfp4).
nlohmann::json gpt_oss(int layers, int experts) {
  nlohmann::json config = nlohmann::json::parse(R"({
  "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": true,
  "attention_dropout": 0.0, "eos_token_id": 200002, "pad_token_id": 199999, "experts_per_token": 4,
  "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096,
  "intermediate_size": 2880, "max_position_embeddings": 131072, "num_attention_heads": 64,
  "num_experts_per_tok": 4, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                   "rope_type": "yarn", "truncate": false},
  "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
  "tie_word_embeddings": false, "vocab_size": 201088, "torch_dtype": "bfloat16",
  "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn",
                          "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
})");
  config["num_hidden_layers"] = layers;
  config["num_local_experts"] = experts;
  config["layer_types"] = nlohmann::json::array();
  for (int layer = 0; layer < layers; ++layer) {
    config["layer_types"].push_back(layer % 2 == 0 ? "sliding_attention" : "full_attention");
  }
  return config;
}

nlohmann::json with_v31_scale_format(const char* text) {
  nlohmann::json config = nlohmann::json::parse(text);
  config["quantization_config"]["scale_fmt"] = "ue8m0";
  return config;
}

// DeepSeek-V3.2: DeepSeek-V3.1's config plus the lightning indexer (64 heads of 128, top 2048).
nlohmann::json deepseek_v32() {
  nlohmann::json config = with_v31_scale_format(kDeepseekV3);
  config["architectures"] = {"DeepseekV32ForCausalLM"};
  config["model_type"] = "deepseek_v32";
  config["index_n_heads"] = 64;
  config["index_head_dim"] = 128;
  config["index_topk"] = 2048;
  return config;
}

// Llama 4's text model (the Llama4ForConditionalGeneration checkpoints' text_config, as
// Llama4ForCausalLM). attn_temperature_tuning is 4 in the published configs (truthy).
constexpr const char* kLlama4Scout = R"({
  "architectures": ["Llama4ForCausalLM"], "model_type": "llama4_text",
  "vocab_size": 202048, "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
  "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
  "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
  "attention_chunk_size": 8192, "no_rope_layer_interval": 4, "use_qk_norm": true,
  "attn_temperature_tuning": 4, "floor_scale": 8192, "attn_scale": 0.1, "attention_bias": false,
  "hidden_act": "silu", "max_position_embeddings": 10485760, "rms_norm_eps": 1e-05,
  "bos_token_id": 200000, "eos_token_id": [200001, 200007, 200008], "pad_token_id": 200018,
  "tie_word_embeddings": false, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "torch_dtype": "bfloat16"
})";

constexpr const char* kLlama4Maverick = R"({
  "architectures": ["Llama4ForCausalLM"], "model_type": "llama4_text",
  "vocab_size": 202048, "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
  "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
  "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
  "attention_chunk_size": 8192, "no_rope_layer_interval": 4, "use_qk_norm": false,
  "attn_temperature_tuning": 4, "floor_scale": 8192, "attn_scale": 0.1, "attention_bias": false,
  "hidden_act": "silu", "max_position_embeddings": 1048576, "rms_norm_eps": 1e-05,
  "bos_token_id": 200000, "eos_token_id": [200001, 200007, 200008], "pad_token_id": 200018,
  "tie_word_embeddings": false, "rope_theta": 500000.0, "rope_scaling": null,
  "torch_dtype": "bfloat16"
})";

std::vector<CatalogModel> build_catalog() {
  using nlohmann::json;
  return {
      {"deepseek-ai/DeepSeek-V3",
       "https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json (values read in the copy at "
       "huggingface.co/JPAdams12th/dormant-model-2/blob/main/config.json and vLLM's DeepseekV3Config defaults); "
       "published counts: README_WEIGHTS.md of deepseek-ai/DeepSeek-V3",
       671e9, 37e9,
       "README_WEIGHTS.md: main model 671B total, 36.6B activated (incl. the 0.9B output head, i.e. without the "
       "input embedding); MTP module 11.5B unique parameters",
       json::parse(kDeepseekV3)},
      {"deepseek-ai/DeepSeek-V3.1",
       "https://huggingface.co/deepseek-ai/DeepSeek-V3.1/blob/main/config.json: the DeepSeek-V3 architecture; the "
       "quantization_config adds scale_fmt ue8m0 (recalled from the model card, not read in the index)",
       671e9, 37e9, "model card: 671B total, 37B activated", with_v31_scale_format(kDeepseekV3)},
      {"deepseek-ai/DeepSeek-V3.2",
       "https://huggingface.co/deepseek-ai/DeepSeek-V3.2/blob/main/config.json (read in the copy transformers keeps "
       "at src/transformers/models/deepseek_v32/deepseek_files/config.json: DeepSeek-V3.1's values plus "
       "index_n_heads 64, index_head_dim 128, index_topk 2048)",
       685e9, 37e9,
       "Hugging Face's safetensors count: 685B with the MTP layer; 37B activated is DeepSeek-V3's figure (the "
       "indexers add 0.85B, all active)",
       deepseek_v32()},
      {"deepseek-ai/DeepSeek-V2-Lite",
       "https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json (read in the copies at "
       "huggingface.co/deepseek-ai/DeepSeek-Coder-V2-Lite-Base and nicoboss/DeepSeek-V2-Lite-Chat-Uncensored)",
       15.7e9, 2.4e9, "DeepSeek-V2 paper: 15.7B total, 2.4B activated", json::parse(kDeepseekV2Lite)},
      {"moonshotai/Kimi-K2-Instruct",
       "https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json (hidden/layers/heads/vocab/"
       "intermediate/rope_theta confirmed by an hf-model-inspector report of Kimi-K2-Instruct-0905; rope_scaling "
       "and max_position_embeddings as in the K2 release, mirrored by hyper-accel/tiny-random-kimi-k2)",
       1e12, 32e9, "model card: 1T total, 32B activated (rounded)", json::parse(kKimiK2)},
      {"mistralai/Mixtral-8x7B-v0.1",
       "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json (read in the identical "
       "mistralai/Mixtral-8x7B-Instruct-v0.1 config at revision eba92302)",
       46.7e9, 12.9e9, "Mistral AI: 46.7B total, 12.9B used per token", json::parse(kMixtral8x7B)},
      {"mistralai/Mixtral-8x22B-v0.1",
       "https://huggingface.co/mistralai/Mixtral-8x22B-v0.1/blob/main/config.json (read in copies derived from "
       "mistralai/Mixtral-8x22B-Instruct-v0.1, vocab 32768; mistral-community/Mixtral-8x22B-v0.1 has vocab 32000)",
       141e9, 39e9, "Mistral AI: 141B total, 39B active", json::parse(kMixtral8x22B)},
      {"Qwen/Qwen3-235B-A22B",
       "https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json (shape values read in the index: 94 "
       "layers, hidden 4096, 64/4 heads, head_dim 128, 128 experts top-8, moe_intermediate 1536, vocab 151936)",
       235e9, 22e9, "model card: 235B total, 22B activated, 234B non-embedding", json::parse(kQwen3_235B)},
      {"Qwen/Qwen3-30B-A3B",
       "https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json (read in the index through configs derived "
       "from it: 48 layers, hidden 2048, 32/4 heads, head_dim 128, 128 experts top-8, moe_intermediate 768)",
       30.5e9, 3.3e9, "model card: 30.5B total, 3.3B activated, 29.9B non-embedding", json::parse(kQwen3_30B)},
      {"openai/gpt-oss-20b",
       "https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json (read in copies in the index: 24 layers, "
       "32 experts top-4, hidden 2880, 64/8 heads of 64, vocab 201088, YaRN 32 over 4096, window 128 on even "
       "layers, routed experts in MXFP4)",
       20.9e9, 3.6e9, "model card: 21B total (20.9B), 3.6B active", gpt_oss(24, 32)},
      {"openai/gpt-oss-120b",
       "https://huggingface.co/openai/gpt-oss-120b/raw/main/config.json (read in copies in the index: 36 layers, "
       "128 experts top-4, otherwise as gpt-oss-20b)",
       116.8e9, 5.1e9, "model card: 117B total (116.8B), 5.1B active", gpt_oss(36, 128)},
      {"meta-llama/Llama-4-Scout-17B-16E",
       "https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E/blob/main/config.json, its text_config (read in "
       "copies in the index: 48 layers, hidden 5120, 40/8 heads, head_dim 128, 16 experts top-1, intermediate 8192, "
       "intermediate_size_mlp 16384, vocab 202048, llama3 rope factor 8; max_position_embeddings 10485760 as the "
       "16E base, the Instruct copy read says 262144)",
       109e9, 17e9, "model card: 109B total (with the vision encoder), 17B activated", json::parse(kLlama4Scout)},
      {"meta-llama/Llama-4-Maverick-17B-128E",
       "https://huggingface.co/meta-llama/Llama-4-Maverick-17B-128E/blob/main/config.json, its text_config (read "
       "in TensorRT-LLM's test copy: 128 experts top-1, interleave_moe_layer_step 2, use_qk_norm false, no rope "
       "scaling, max_position_embeddings 1048576)",
       400e9, 17e9, "model card: 400B total (with the vision encoder), 17B activated", json::parse(kLlama4Maverick)},
      {"Qwen/Qwen2-57B-A14B",
       "https://huggingface.co/Qwen/Qwen2-57B-A14B/blob/759c0d83a2b7ad416611d984fdfffbec8de361c2/config.json", 57e9,
       14e9, "model card: 57B total, 14B activated (rounded)", json::parse(kQwen2_57B)},
  };
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return text;
}

}  // namespace

const std::vector<CatalogModel>& model_catalog() {
  static const std::vector<CatalogModel> catalog = build_catalog();
  return catalog;
}

Result<const CatalogModel*> find_catalog_model(const std::string& id) {
  std::vector<std::string> ids;
  for (const CatalogModel& model : model_catalog()) {
    if (lower(model.id) == lower(id)) return &model;
    ids.push_back(model.id);
  }
  return make_error("'{}' is not a local checkpoint directory, a config.json, or a catalog model (catalog: {})", id,
                    fmt::join(ids, ", "));
}

}  // namespace moeserve::plan
