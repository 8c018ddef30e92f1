// ModelConfig: the typed, architecture-neutral description of a model, parsed once from a
// Hugging Face config.json (after --hf-overrides are merged in). Everything downstream (layers,
// the memory planner, the runner) reads this, never the JSON. Invariants after parsing:
// sizes are positive, num_heads % num_kv_heads == 0, layer_is_moe has num_layers entries, `moe`
// is set iff some layer is MoE, `mla` is set iff attention is MLA.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/dtype.h"
#include "base/result.h"

namespace moeserve {

enum class Architecture {
  kMixtral,
  kQwen2Moe,
  kQwen3Moe,
  kDeepseekV2,
  kDeepseekV3,
  kDeepseekV32,
  kLlama,
  kMistral,
  kQwen2,
  kQwen3,
  kGptOss,
  kLlama4,
};

enum class RopeKind { kDefault, kLinear, kYarn, kLlama3 };
// kHalf: rotate_half over [x[:d/2], x[d/2:]] (Llama, Mixtral, Qwen). kInterleaved: pairs
// (x[2i], x[2i+1]) rotate together (DeepSeek's MLA rope part, GPT-J style).
enum class RopeLayout { kHalf, kInterleaved };

struct RopeConfig {
  RopeKind kind = RopeKind::kDefault;
  RopeLayout layout = RopeLayout::kHalf;
  double theta = 10000.0;
  int rotary_dim = 0;  // dims rotated per head (head_dim × partial_rotary_factor; MLA: qk_rope_head_dim)
  double factor = 1.0;
  // YaRN
  int original_max_position = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0 = absent
  double mscale_all_dim = 0.0;  // 0 = absent
  std::optional<double> attention_factor;
  bool truncate = true;
  // Llama 3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
};

// DeepSeek-V3.2's lightning indexer (DeepSeek Sparse Attention): `heads` small query heads of
// `head_dim` (from the q latent) score every earlier key against one cached index key per token
// (head_dim floats, from the hidden state); each query then attends to its `topk` best keys only.
struct IndexerConfig {
  int heads = 0;     // index_n_heads
  int head_dim = 0;  // index_head_dim
  int topk = 0;      // index_topk
};

struct MlaConfig {
  int q_lora_rank = 0;  // 0: plain q_proj
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  std::optional<IndexerConfig> indexer;  // DeepSeek-V3.2
  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Floats per token of one layer's cache: the latent, the rope key and (V3.2) the index key.
  int cache_entry() const { return kv_lora_rank + qk_rope_head_dim + (indexer ? indexer->head_dim : 0); }
};

// kSoftmax: softmax over every expert's logit, then selection. kSigmoid: sigmoid per expert.
// kTopKSoftmax (GPT-OSS): top-k over the logits, weights = softmax over the k selected logits.
enum class RouterScoring { kSoftmax, kSigmoid, kTopKSoftmax };
// kTopK: top-k over all experts. kGroupLimited: keep the topk_group best groups (group score =
// max score for V2's group_limited_greedy, sum of the top-2 biased scores for V3's noaux_tc),
// then top-k inside them.
enum class RouterSelection { kTopK, kGroupLimitedMax, kGroupLimitedTop2Sum };

struct MoeConfig {
  int num_experts = 0;
  int top_k = 0;
  int expert_intermediate_size = 0;
  RouterScoring scoring = RouterScoring::kSoftmax;
  RouterSelection selection = RouterSelection::kTopK;
  bool norm_topk_prob = false;
  bool has_score_correction_bias = false;  // DeepSeek-V3: e_score_correction_bias, selection only
  int num_groups = 1;
  int topk_groups = 1;
  float routed_scaling_factor = 1.0f;
  // Shared experts: intermediate size of the always-on MLP (0 = none), and whether its output
  // is scaled by sigmoid(x · shared_expert_gate) (Qwen2-MoE).
  int shared_intermediate_size = 0;
  bool shared_expert_gate = false;
  // GPT-OSS: the router's Linear has a bias (added to the logits), each expert's projections have
  // biases, and the experts' activation is the clamped SwiGLU (ops::GluParams).
  bool router_bias = false;
  bool expert_bias = false;
  bool clamped_swiglu = false;
  float swiglu_alpha = 1.702f;
  float swiglu_limit = 7.0f;
  // Llama 4: each routed expert's INPUT is scaled by its routing weight (expert(w · x), not
  // w · expert(x)), the outputs then summed with weight 1.
  bool scale_expert_input = false;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // as in config.json, e.g. "MixtralForCausalLM"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;  // dense MLP layers
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // GQA head size (MLA uses mla.* instead)
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;
  bool o_bias = false;    // Llama's attention_bias also biases o_proj
  int sliding_window = 0;  // 0: full causal attention
  // Per layer (GPT-OSS's layer_types): the window layer l attends over, 0 for full attention;
  // empty when every layer uses sliding_window. Read through window(l).
  std::vector<int> layer_windows;
  bool attention_sinks = false;  // GPT-OSS: self_attn.sinks, a per-head logit in the softmax
  bool qk_norm = false;  // Qwen3: per-head RMSNorm on q and k before RoPE
  // Llama 4 (iRoPE). Layers listed in layer_chunked attend within chunks of attention_chunk_size
  // (position p sees keys [floor(p / C) * C, p]); layers in layer_nope apply no rope (and attend
  // fully); qk_l2_norm: q and k L2-normalised per head without weight (eps rms_norm_eps) on the
  // rope layers; on the NoPE layers with attn_temperature_floor > 0 the query at position p is
  // scaled by log(floor((p + 1) / attn_temperature_floor) + 1) * attn_temperature_scale + 1.
  // Empty vectors: no layer is chunked / NoPE.
  int attention_chunk_size = 0;
  std::vector<bool> layer_chunked;
  std::vector<bool> layer_nope;
  bool qk_l2_norm = false;
  float attn_temperature_floor = 0.0f;
  float attn_temperature_scale = 0.0f;
  int max_position_embeddings = 0;
  DType dtype = DType::kBF16;  // torch_dtype of the checkpoint
  std::vector<int> bos_token_ids;
  std::vector<int> eos_token_ids;
  RopeConfig rope;
  std::optional<MlaConfig> mla;
  std::optional<MoeConfig> moe;
  std::vector<bool> layer_is_moe;
  float attention_scale = 1.0f;  // softmax scale (MLA folds YaRN's mscale² in here)
  // Prepended to every checkpoint tensor name: "language_model." for a multimodal checkpoint's text
  // model (Llama4ForConditionalGeneration), else empty.
  std::string weight_prefix;
  int num_mtp_layers = 0;  // DeepSeek-V3 num_nextn_predict_layers (weights ignored for serving)
  // quantization_config.quant_method == "fp8": block size [rows, cols] of the serialized scales
  // ([0, 0] = per-tensor, which the loader refuses), and whether scale_fmt is ue8m0 (DeepSeek-V3.1:
  // power-of-two scales, so activations are quantized with power-of-two scales too).
  std::optional<std::array<int, 2>> fp8_block_size;
  bool fp8_scale_ue8m0 = false;
  // quantization_config.quant_method == "mxfp4" (GPT-OSS as published): the fused routed-expert
  // tensors come as <name>_blocks (e2m1 pairs) + <name>_scales (e8m0), dequantized exactly at load
  // (model/sharded_weights.cpp); every other tensor is 16/32-bit.
  bool mxfp4_experts = false;

  bool is_mla() const { return mla.has_value(); }
  // The sliding window of layer `layer` (0: full causal attention).
  int window(int layer) const { return layer_windows.empty() ? sliding_window : layer_windows[layer]; }
  bool is_chunked(int layer) const { return !layer_chunked.empty() && layer_chunked[layer]; }
  bool is_nope(int layer) const { return !layer_nope.empty() && layer_nope[layer]; }
};

// Merges `overrides` (e.g. --hf-overrides '{"num_hidden_layers": 8}') into the raw config as a
// JSON merge patch, then parses it. Unknown architectures and unsupported values are refused by
// name with the list of what is supported.
Result<ModelConfig> parse_model_config(const nlohmann::json& config_json,
                                       const nlohmann::json& overrides = nlohmann::json::object());
// Reads DIR/config.json (or a config.json path) and parses it.
Result<ModelConfig> load_model_config(const std::string& dir_or_file,
                                      const nlohmann::json& overrides = nlohmann::json::object());

// The supported config.json `architectures` names, for error messages and --help.
std::vector<std::string> supported_architectures();

}  // namespace moeserve
