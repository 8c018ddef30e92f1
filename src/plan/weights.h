// The weight inventory of a model: every tensor group a Hugging Face checkpoint of this config
// holds (embedding, attention incl. MLA's LoRA projections, dense MLPs, routed and shared
// experts, routers, norms, lm_head unless tied, DeepSeek's MTP layers), with the shape of one
// tensor, how many identical tensors there are, and how vLLM shards it. Parameter counts, weight
// bytes per dtype and per-GPU shards are all derived from this one list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace moeserve::plan {

enum class Component {
  kEmbedding,
  kLmHead,
  kAttention,
  kDenseMlp,
  kRoutedExperts,
  kSharedExperts,
  kRouter,
  kNorm,
};
inline constexpr int kNumComponents = 8;
const char* component_name(Component component);

// How a tensor is split across the ranks of a parallel layout (vLLM's layers):
//   kReplicated: whole on every rank (norms, routers, MLA's q_a/kv_a projections).
//   kColumn: output rows split over TP (ColumnParallelLinear).  kRow: input columns split over TP.
//   kVocab: vocabulary rows split over TP (VocabParallelEmbedding / ParallelLMHead).
//   kKvHeads: GQA k/v rows split over TP, replicated when TP exceeds the KV head count.
//   kExpertColumn / kExpertRow: routed experts; tensor-split over TP×DP without expert
//   parallelism, whole experts placed over EP = TP×DP with it.
enum class Sharding { kReplicated, kColumn, kRow, kVocab, kKvHeads, kExpertColumn, kExpertRow };

// One group of identical tensors. Invariant: rows, cols, count ≥ 1; a vector has cols == 1.
struct WeightGroup {
  std::string name;  // e.g. "self_attn.q_b_proj.weight"
  Component component = Component::kAttention;
  Sharding sharding = Sharding::kReplicated;
  int layer = -1;         // decoder layer (MTP layers follow the stack); -1 outside the stack
  bool mtp = false;       // belongs to a multi-token-prediction layer (not loaded for serving)
  int64_t rows = 1;       // [rows, cols] = [out_features, in_features] for a Linear
  int64_t cols = 1;
  int64_t count = 1;      // identical tensors (routed experts: one per expert)
  bool quantizable = false;  // a Linear weight that FP8 checkpoints store as e4m3 + scales
  bool keep_fp32 = false;    // stays float32 (DeepSeek-V3's e_score_correction_bias)

  int64_t elements() const { return rows * cols * count; }
};

struct WeightInventory {
  std::vector<WeightGroup> groups;
  int num_layers = 0;      // decoder layers served (MTP layers excluded)
  int num_mtp_layers = 0;  // extra MTP layers the checkpoint carries
};

WeightInventory enumerate_weights(const ModelConfig& config);

// Parameter counts. total/active exclude MTP layers (as every published total does); `mtp` is
// the MTP layers' unique parameters (their embedding and output head are shared with the main
// model and not counted again). Active = everything a token passes through: all non-expert
// weights plus top_k of the routed experts in each MoE layer.
struct ParamCounts {
  int64_t total = 0;
  int64_t active = 0;
  int64_t embedding = 0;  // input embedding (a lookup; DeepSeek's "activated" figures leave it out)
  int64_t mtp = 0;
  int64_t by_component[kNumComponents] = {};

  int64_t active_without_embedding() const { return active - embedding; }
};

ParamCounts count_params(const ModelConfig& config, const WeightInventory& inventory);

}  // namespace moeserve::plan
