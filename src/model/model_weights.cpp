// load_model_weights: this rank's part of every tensor of the weight plan (model/weight_plan.h,
// each entry's sharding over the TP partition) converted to bf16 and written once into a
// backend's WeightMemory; each packing group (q/k/v, gate/up, the
// experts' gate/up) stacked side by side so it is one GEMM; kv_b and the selection bias float32.
#include <cstring>
#include <functional>
#include <string>
#include <optional>
#include <vector>

#include "model/rope.h"
#include "model/sharded_weights.h"
#include "model/step_model.h"
#include "model/weight_plan.h"

namespace moeserve {

namespace {

class Loader {
 public:
  Loader(const ModelConfig& config, const WeightPlan& plan, const ShardedWeights* weights, const ShardSpec& shard,
         WeightMemory& memory, uint64_t seed)
      : config_(config),
        plan_(plan),
        weights_(weights),
        seed_(seed),
        tp_(shard.tp),
        experts_(shard.expert_parallel ? Partition{} : shard.tp),
        memory_(memory) {}

  template <typename T>
  Result<T*> alloc(int64_t count) {
    MS_ASSIGN_OR_RETURN(void* ptr, memory_.allocate(static_cast<size_t>(count) * sizeof(T)));
    return static_cast<T*>(ptr);
  }

  // This rank's part of tensor `expert` of the entry: its sharding over the TP partition (KV
  // heads by vLLM's replication rule: with fewer KV heads than ranks, rank r uses head
  // r / (tp / num_kv_heads)).
  // Experts (routed and shared) split over experts_: the TP partition, or whole with EP.
  // Without weights (dummy): a view with no data, of the whole tensor's shape.
  Result<TensorView> part(const WeightEntry& entry, int expert = 0) const {
    if (weights_ == nullptr) return TensorView{nullptr, DType::kBF16, entry.shape};
    const bool expert_tensor = entry.component == Component::kRoutedExperts || entry.component == Component::kSharedExperts;
    if (entry.sharding != Sharding::kKvHeads) {
      return weights_->shard(entry.role, entry.layer, expert_tensor ? experts_ : tp_, expert);
    }
    const int64_t heads = local_kv_heads(config_, tp_);
    const int64_t first = config_.num_kv_heads >= tp_.size ? static_cast<int64_t>(tp_.rank) * heads
                                                           : tp_.rank / (tp_.size / config_.num_kv_heads);
    return weights_->rows(entry.role, entry.layer, first * config_.head_dim, heads * config_.head_dim);
  }

  // dst [view's shape] ← view as bf16 (tensor `expert` of entry; a view with no data: random
  // weights from the backend, normal(0, 0.02) from a hash of the name, norms 1.0).
  Status fill(uint16_t* dst, const TensorView& view, const WeightEntry& entry, int expert = 0) {
    const int64_t numel = view.numel();
    if (view.data == nullptr) return fill_random(dst, DType::kBF16, numel, entry, expert);
    staging_.resize(static_cast<size_t>(numel));
    if (view.dtype == DType::kBF16) {
      std::memcpy(staging_.data(), view.data, view.nbytes());
    } else {
      std::vector<float> f32(static_cast<size_t>(numel));
      convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
      for (size_t i = 0; i < f32.size(); ++i) staging_[i] = f32_to_bf16(f32[i]);
    }
    memory_.write(dst, staging_.data(), staging_.size() * sizeof(uint16_t));
    return ok_status();
  }

  Status fill_random(void* dst, DType dtype, int64_t numel, const WeightEntry& entry, int expert) {
    const bool is_norm = entry.component == Component::kNorm;
    return memory_.fill_random(dst, dtype, numel, seed_ ^ std::hash<std::string>{}(entry.tensor_name(expert)),
                               is_norm ? 0.0f : 0.02f, 1.0f);
  }

  Result<const uint16_t*> tensor(const WeightEntry& entry) {
    MS_ASSIGN_OR_RETURN(TensorView view, part(entry));
    MS_ASSIGN_OR_RETURN(uint16_t * ptr, alloc<uint16_t>(view.numel()));
    MS_RETURN_IF_ERROR(fill(ptr, view, entry));
    return ptr;
  }
  // The tensor of `role` in `layer`, or null when this config has none.
  Result<const uint16_t*> tensor_if_present(WeightRole role, int layer) {
    const WeightEntry* entry = plan_.find(role, layer);
    if (entry == nullptr) return static_cast<const uint16_t*>(nullptr);
    return tensor(*entry);
  }

  // A float32 copy (the MLA absorption matrix, the router's selection bias).
  Result<const float*> tensor_f32(const WeightEntry& entry) {
    MS_ASSIGN_OR_RETURN(TensorView view, part(entry));
    const int64_t numel = view.numel();
    MS_ASSIGN_OR_RETURN(float* ptr, alloc<float>(numel));
    if (view.data == nullptr) {
      MS_RETURN_IF_ERROR(fill_random(ptr, DType::kF32, numel, entry, 0));
      return ptr;
    }
    std::vector<float> f32(static_cast<size_t>(numel));
    convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
    memory_.write(ptr, f32.data(), f32.size() * sizeof(float));
    return ptr;
  }

  // Several [rows_i, in] matrices (a packing group, or one tensor) stacked into one
  // [Σ rows_i, in] projection, with their biases stacked likewise when given.
  Result<Projection> stacked(const std::vector<const WeightEntry*>& weights,
                                const std::vector<const WeightEntry*>& biases = {}) {
    MS_CHECK(!weights.empty() && (biases.empty() || biases.size() == weights.size()));
    std::vector<TensorView> parts;  // [i]: weights[i]'s part
    for (const WeightEntry* entry : weights) {
      MS_ASSIGN_OR_RETURN(TensorView view, part(*entry));
      parts.push_back(view);
    }
    const int64_t in = parts.front().dim(1);
    int64_t total = 0;
    for (const TensorView& view : parts) total += view.dim(0);
    Projection linear{.out = static_cast<int>(total), .in = static_cast<int>(in)};
    MS_ASSIGN_OR_RETURN(uint16_t * weight, alloc<uint16_t>(total * in));
    int64_t row = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      MS_CHECK(parts[i].dim(1) == in);
      MS_RETURN_IF_ERROR(fill(weight + row * in, parts[i], *weights[i]));
      row += parts[i].dim(0);
    }
    linear.weight = weight;
    if (!biases.empty()) {
      MS_ASSIGN_OR_RETURN(uint16_t * bias, alloc<uint16_t>(total));
      row = 0;
      for (const WeightEntry* entry : biases) {
        MS_ASSIGN_OR_RETURN(TensorView view, part(*entry));
        MS_RETURN_IF_ERROR(fill(bias + row, view, *entry));
        row += view.numel();
      }
      MS_CHECK(row == total);
      linear.bias = bias;
    }
    return linear;
  }

  // One projection: the weight of `role` in `layer`, with `bias_role`'s tensor when present (a
  // row-parallel projection's bias on rank 0 only: the all-reduce adds it once).
  Result<Projection> linear(WeightRole role, int layer, std::optional<WeightRole> bias_role = std::nullopt) {
    std::vector<const WeightEntry*> biases;
    const bool row_parallel = plan_.get(role, layer).sharding == Sharding::kRow;
    if (bias_role && plan_.find(*bias_role, layer) != nullptr && (!row_parallel || tp_.rank == 0)) {
      biases.push_back(&plan_.get(*bias_role, layer));
    }
    return stacked({&plan_.get(role, layer)}, biases);
  }

  // A SwiGLU MLP: gate and up stacked ([2I, hidden]), down [hidden, I].
  Result<MlpWeights> mlp(const SwigluRoles& roles, PackGroup gate_up, int layer) {
    MlpWeights mlp;
    MS_ASSIGN_OR_RETURN(mlp.gate_up, stacked(plan_.packed(gate_up, layer)));
    mlp.intermediate = mlp.gate_up.out / 2;
    MS_ASSIGN_OR_RETURN(mlp.down, linear(roles.down, layer));
    return mlp;
  }

  Status gqa(int layer, GqaWeights& gqa) {
    MS_ASSIGN_OR_RETURN(gqa.qkv, stacked(plan_.packed(PackGroup::kQkv, layer), plan_.packed(PackGroup::kQkvBias, layer)));
    MS_ASSIGN_OR_RETURN(gqa.o, linear(WeightRole::kO, layer, WeightRole::kOBias));
    MS_ASSIGN_OR_RETURN(gqa.q_norm, tensor_if_present(WeightRole::kQNorm, layer));
    MS_ASSIGN_OR_RETURN(gqa.k_norm, tensor_if_present(WeightRole::kKNorm, layer));
    return ok_status();
  }

  Status mla(int layer, MlaWeights& mla) {
    if (plan_.find(WeightRole::kQA, layer) != nullptr) {
      MS_ASSIGN_OR_RETURN(mla.q_a, linear(WeightRole::kQA, layer));
      MS_ASSIGN_OR_RETURN(mla.q_a_norm, tensor(plan_.get(WeightRole::kQANorm, layer)));
      MS_ASSIGN_OR_RETURN(mla.q_b, linear(WeightRole::kQB, layer));
    } else {
      MS_ASSIGN_OR_RETURN(mla.q, linear(WeightRole::kQ, layer));
    }
    MS_ASSIGN_OR_RETURN(mla.kv_a, linear(WeightRole::kKvA, layer));
    MS_ASSIGN_OR_RETURN(mla.kv_a_norm, tensor(plan_.get(WeightRole::kKvANorm, layer)));
    MS_ASSIGN_OR_RETURN(mla.kv_b, tensor_f32(plan_.get(WeightRole::kKvB, layer)));
    MS_ASSIGN_OR_RETURN(mla.o, linear(WeightRole::kO, layer));
    return ok_status();
  }

  Status moe(const MoeConfig& m, const ShardSpec& shard, int layer, MoeWeights& moe) {
    moe.router_params = router_params(m);
    moe.num_experts = m.num_experts;
    MS_ASSIGN_OR_RETURN(moe.router, linear(WeightRole::kRouter, layer));
    if (const WeightEntry* bias = plan_.find(WeightRole::kRouterBias, layer)) {
      MS_ASSIGN_OR_RETURN(moe.selection_bias, tensor_f32(*bias));
    }
    // Experts side by side: gate_up [E, 2I, hidden] (each expert's gate rows, then its up rows),
    // down [E, hidden, I].
    // Which experts: every one (each its TP slice: Ie / tp intermediate rows), or with EP the
    // logical experts of this rank's slots, whole.
    std::vector<int> slot_experts;
    if (shard.expert_parallel) {
      moe.map = std::make_shared<const ExpertMap>(
          ExpertMap::initial(m.num_experts, shard.num_redundant_experts, shard.ep.size, shard.placement));
      const int per_rank = moe.map->slots_per_rank();
      for (int slot = shard.ep.rank * per_rank; slot < (shard.ep.rank + 1) * per_rank; ++slot) {
        slot_experts.push_back(moe.map->phys2log[slot]);
      }
    } else {
      for (int expert = 0; expert < m.num_experts; ++expert) slot_experts.push_back(expert);
    }
    moe.num_slots = static_cast<int>(slot_experts.size());
    const std::vector<const WeightEntry*> gate_up_entries = plan_.packed(PackGroup::kExpertGateUp, layer);
    const WeightEntry& down_entry = plan_.get(WeightRole::kExpertDown, layer);
    moe.intermediate = m.expert_intermediate_size / experts_.size;
    const int64_t gate_up_elements = int64_t(2) * moe.intermediate * config_.hidden_size;
    const int64_t down_elements = int64_t(config_.hidden_size) * moe.intermediate;
    MS_ASSIGN_OR_RETURN(uint16_t * gate_up, alloc<uint16_t>(moe.num_slots * gate_up_elements));
    MS_ASSIGN_OR_RETURN(uint16_t * down, alloc<uint16_t>(moe.num_slots * down_elements));
    for (int slot = 0; slot < moe.num_slots; ++slot) {
      const int expert = slot_experts[slot];
      uint16_t* dst = gate_up + slot * gate_up_elements;
      for (const WeightEntry* entry : gate_up_entries) {
        MS_ASSIGN_OR_RETURN(TensorView view, part(*entry, expert));
        MS_RETURN_IF_ERROR(fill(dst, view, *entry, expert));
        dst += view.numel();
      }
      MS_CHECK(dst == gate_up + (slot + 1) * gate_up_elements);
      MS_ASSIGN_OR_RETURN(TensorView down_view, part(down_entry, expert));
      MS_CHECK(down_view.numel() == down_elements);
      MS_RETURN_IF_ERROR(fill(down + slot * down_elements, down_view, down_entry, expert));
    }
    moe.experts_gate_up = gate_up;
    moe.experts_down = down;
    if (plan_.find(WeightRole::kSharedGate, layer) != nullptr) {
      moe.has_shared = true;
      MS_ASSIGN_OR_RETURN(moe.shared, mlp(kSharedExpertRoles, PackGroup::kSharedGateUp, layer));
      if (plan_.find(WeightRole::kSharedExpertGate, layer) != nullptr) {
        MS_ASSIGN_OR_RETURN(moe.shared_gate, linear(WeightRole::kSharedExpertGate, layer));
      }
    }
    return ok_status();
  }

 private:
  const ModelConfig& config_;
  const WeightPlan& plan_;
  const ShardedWeights* weights_;  // null: random weights (dummy)
  uint64_t seed_;
  Partition tp_;
  Partition experts_;  // how routed and shared experts split: over TP, or whole with EP
  WeightMemory& memory_;
  std::vector<uint16_t> staging_;
};

Result<ModelWeights> load_weights(const ModelConfig& cfg, const WeightPlan& plan, const ShardedWeights* weights,
                                  const ShardSpec& shard, WeightMemory& memory, uint64_t seed);

}  // namespace

ops::RouterParams router_params(const MoeConfig& moe) {
  return ops::RouterParams{.top_k = moe.top_k,
                           .sigmoid = moe.scoring == RouterScoring::kSigmoid,
                           .num_groups = moe.selection == RouterSelection::kTopK ? 1 : moe.num_groups,
                           .topk_groups = moe.topk_groups,
                           .group_score_top2_sum = moe.selection == RouterSelection::kGroupLimitedTop2Sum,
                           .renormalize = moe.norm_topk_prob,
                           .scaling_factor = moe.routed_scaling_factor};
}

Result<ModelWeights> load_model_weights(const ModelConfig& cfg, const ShardedWeights& weights, const ShardSpec& shard,
                                        WeightMemory& memory) {
  return load_weights(cfg, weights.plan(), &weights, shard, memory, 0);
}

Result<ModelWeights> load_random_model_weights(const ModelConfig& cfg, const WeightPlan& plan, uint64_t seed,
                                               WeightMemory& memory) {
  return load_weights(cfg, plan, nullptr, ShardSpec{}, memory, seed);
}

namespace {

Result<ModelWeights> load_weights(const ModelConfig& cfg, const WeightPlan& plan, const ShardedWeights* weights,
                                  const ShardSpec& shard, WeightMemory& memory, uint64_t seed) {
  if (cfg.fp8_block_size) return fp8_unsupported_error("the step loop");
  MS_RETURN_IF_ERROR(validate_shard_spec(cfg, shard));
  Loader up(cfg, plan, weights, shard, memory, seed);
  ModelWeights w;
  MS_ASSIGN_OR_RETURN(w.embed, up.tensor(plan.get(WeightRole::kEmbedding)));
  MS_ASSIGN_OR_RETURN(w.final_norm, up.tensor(plan.get(WeightRole::kFinalNorm)));
  if (cfg.tie_word_embeddings) {
    w.lm_head = Projection{w.embed, nullptr, cfg.vocab_size, cfg.hidden_size};
  } else {
    MS_ASSIGN_OR_RETURN(w.lm_head, up.linear(WeightRole::kLmHead, -1));
  }
  const RopeTable rope = build_rope_table(cfg.rope);
  MS_ASSIGN_OR_RETURN(float* inv_freq, up.alloc<float>(static_cast<int64_t>(rope.inv_freq.size())));
  memory.write(inv_freq, rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float));
  w.inv_freq = inv_freq;
  w.rope_half = static_cast<int>(rope.inv_freq.size());
  w.rope_attention_factor = rope.attention_factor;
  w.rope_interleaved = rope.interleaved;
  w.layers.resize(cfg.num_layers);
  for (int layer_idx = 0; layer_idx < cfg.num_layers; ++layer_idx) {
    LayerWeights& layer = w.layers[layer_idx];
    MS_ASSIGN_OR_RETURN(layer.input_norm, up.tensor(plan.get(WeightRole::kInputNorm, layer_idx)));
    MS_ASSIGN_OR_RETURN(layer.post_norm, up.tensor(plan.get(WeightRole::kPostAttentionNorm, layer_idx)));
    if (cfg.is_mla()) {
      MS_RETURN_IF_ERROR(up.mla(layer_idx, layer.mla));
    } else {
      MS_RETURN_IF_ERROR(up.gqa(layer_idx, layer.gqa));
    }
    layer.is_moe = cfg.layer_is_moe[layer_idx];
    if (layer.is_moe) {
      MS_RETURN_IF_ERROR(up.moe(*cfg.moe, shard, layer_idx, layer.moe));
    } else {
      MS_ASSIGN_OR_RETURN(layer.mlp, up.mlp(kDenseMlpRoles, PackGroup::kMlpGateUp, layer_idx));
    }
  }
  return w;
}

}  // namespace

}  // namespace moeserve
