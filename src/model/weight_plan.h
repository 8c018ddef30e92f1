// The weight plan: every tensor a Hugging Face checkpoint of a config holds, declared once, in
// one place (weight_plan.cpp is the only source file that spells a checkpoint tensor name).
// Each entry says what the tensor is (its role), its name and shape, how many identical tensors
// there are (routed experts: one per expert), which tensors a backend may stack into one GEMM
// (packing group), whether it stays float32, and how a parallel layout splits it (vLLM's rules).
// Every consumer reads this plan: the CPU layers and the CUDA uploader to load (any shard
// spec), `moeserve plan` for parameters and bytes, and the benchmarks for bytes per token.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "tensor/tensor.h"

namespace moeserve {

// What a tensor is, whatever the family calls it. kQ is MLA's plain q_proj too (no q-LoRA).
enum class WeightRole : uint8_t {
  kEmbedding,
  kFinalNorm,
  kLmHead,
  kInputNorm,
  kPostAttentionNorm,
  // GQA attention
  kQ,
  kK,
  kV,
  kO,
  kQBias,
  kKBias,
  kVBias,
  kOBias,
  kQNorm,
  kKNorm,
  kAttnSinks,  // GPT-OSS's per-head sink logits
  // MLA attention (with kQ and kO)
  kQA,
  kQANorm,
  kQB,
  kKvA,
  kKvANorm,
  kKvB,
  // DeepSeek-V3.2's lightning indexer (its K and head weights stack after kKvA: kMlaKvA)
  kIndexerQB,
  kIndexerK,
  kIndexerKNorm,
  kIndexerKNormBias,
  kIndexerWeights,
  // dense SwiGLU MLP
  kMlpGate,
  kMlpUp,
  kMlpDown,
  // MoE block
  kRouter,
  kRouterBias,  // DeepSeek-V3's e_score_correction_bias
  kRouterLogitBias,  // GPT-OSS's router Linear bias, added to the logits
  kExpertGate,
  kExpertUp,
  kExpertDown,
  kExpertGateBias,  // GPT-OSS's expert biases
  kExpertUpBias,
  kExpertDownBias,
  kSharedGate,
  kSharedUp,
  kSharedDown,
  kSharedExpertGate,  // Qwen2-MoE's sigmoid gate on the shared expert
  // DeepSeek-V3's multi-token-prediction layer (listed for sizing, never loaded for serving)
  kMtpEnorm,
  kMtpHnorm,
  kMtpEhProj,
  kMtpHeadNorm,
};
inline constexpr int kNumWeightRoles = static_cast<int>(WeightRole::kMtpHeadNorm) + 1;

// The three projections of a SwiGLU MLP: dense, shared experts or routed experts.
struct SwigluRoles {
  WeightRole gate, up, down;
};
inline constexpr SwigluRoles kDenseMlpRoles{WeightRole::kMlpGate, WeightRole::kMlpUp, WeightRole::kMlpDown};
inline constexpr SwigluRoles kSharedExpertRoles{WeightRole::kSharedGate, WeightRole::kSharedUp,
                                                WeightRole::kSharedDown};
inline constexpr SwigluRoles kRoutedExpertRoles{WeightRole::kExpertGate, WeightRole::kExpertUp,
                                                WeightRole::kExpertDown};

// The part of the model a tensor belongs to (parameter and byte breakdowns).
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
//   kExpertColumn / kExpertRow: routed experts; tensor-split without expert parallelism, whole
//   experts placed over the EP ranks with it.
enum class Sharding { kReplicated, kColumn, kRow, kVocab, kKvHeads, kExpertColumn, kExpertRow };

// Tensors of one layer that a backend may stack row-wise into one projection, in plan order.
// kMlaKvA: MLA's kv_a_proj_with_mqa, then V3.2's indexer wk and weights_proj (all read the hidden
// state, all replicated).
enum class PackGroup : uint8_t {
  kNone,
  kQkv,
  kQkvBias,
  kMlaKvA,
  kMlpGateUp,
  kSharedGateUp,
  kExpertGateUp,
  kExpertGateUpBias
};

struct WeightEntry {
  WeightRole role = WeightRole::kEmbedding;
  std::string name;         // checkpoint name; routed experts: the part before the expert index
  std::string name_suffix;  // routed experts: the part after it (".w1.weight"); else empty
                            // (also for a fused expert tensor, whose name is whole)
  Shape shape;              // one tensor: [out_features, in_features] for a Linear, [n] for a vector
  int64_t count = 1;        // identical tensors (routed experts: one per expert)
  int layer = -1;           // decoder layer (MTP layers follow the stack); -1 outside the stack
  bool mtp = false;         // belongs to a multi-token-prediction layer (not loaded for serving)
  Component component = Component::kAttention;
  Sharding sharding = Sharding::kReplicated;
  PackGroup pack = PackGroup::kNone;
  bool quantizable = false;  // a Linear weight that FP8 checkpoints store as e4m3 + scales
  bool keep_fp32 = false;    // stays float32 on every backend (router biases; GPT-OSS's sinks, expert biases)
  // A fused expert tensor (Llama 4, GPT-OSS): all `count` experts in the one checkpoint tensor
  // `name`, stored [count, in, fused_cols] (transposed relative to a Linear weight). This
  // projection's out = shape[0] rows are the columns fused_offset + j * fused_stride (j < out) of
  // its last dim: e.g. gate = the first I columns of a [E, hidden, 2I] gate_up (offset 0,
  // stride 1), or its even columns (offset 0, stride 2). The loader reads expert e's slice,
  // transposed to [out, in]; everything after it sees an ordinary [out, in] tensor. A vector entry
  // [out] (GPT-OSS's expert biases) is stored [count, fused_cols] and selected alike.
  // fused_cols == 0: one checkpoint tensor per expert (or not an expert tensor).
  int64_t fused_cols = 0;
  int64_t fused_offset = 0;
  int64_t fused_stride = 1;

  // The checkpoint name of tensor `expert` (routed experts) or of the one tensor.
  std::string tensor_name(int expert = 0) const;
  bool fused() const { return fused_cols > 0; }
  // The shape the checkpoint stores under tensor_name(): `shape`, or [count, in, fused_cols].
  Shape stored_shape() const;

  int64_t rows() const { return shape[0]; }
  int64_t cols() const { return shape.rank() == 2 ? shape[1] : 1; }
  int64_t elements() const { return shape.numel() * count; }
};

class WeightPlan {
 public:
  // Invariant of the result: every shape is positive; MTP layers follow the decoder layers.
  static WeightPlan build(const ModelConfig& config);

  const std::vector<WeightEntry>& entries() const { return entries_; }
  int num_layers() const { return num_layers_; }          // decoder layers served (MTP excluded)
  int num_mtp_layers() const { return num_mtp_layers_; }  // extra MTP layers the checkpoint carries

  // The entry of `role` in `layer` (-1: outside the stack), or null when this config has none
  // (no q-LoRA, no biases, a dense layer's MoE roles, ...).
  const WeightEntry* find(WeightRole role, int layer = -1) const;
  // As find, for a role the config must have (a programming error otherwise).
  const WeightEntry& get(WeightRole role, int layer = -1) const;
  // The entries of `group` in `layer`, in the order a backend stacks them (q, k, v; gate, up).
  std::vector<const WeightEntry*> packed(PackGroup group, int layer) const;

 private:
  friend class WeightPlanBuilder;
  std::vector<WeightEntry> entries_;
  // index_[layer + 1][role]: position in entries_, or -1.
  std::vector<std::vector<int32_t>> index_;
  int num_layers_ = 0;
  int num_mtp_layers_ = 0;
};

// Weight elements one decode step reads: every served tensor but the embedding table (a lookup),
// the LM head (the embedding again when tied) and, of each MoE layer's routed experts,
// `routed_per_layer` of them (a single token: top_k; a batch: the distinct experts it routes to).
double decode_read_elements(const ModelConfig& config, const WeightPlan& plan, double routed_per_layer = -1.0);
// The same elements, each entry's counted at bytes_per_element(entry).
double decode_read_bytes(const ModelConfig& config, const WeightPlan& plan, double routed_per_layer,
                         const std::function<double(const WeightEntry&)>& bytes_per_element);

}  // namespace moeserve
