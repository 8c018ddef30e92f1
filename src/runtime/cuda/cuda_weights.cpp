// Loading a CudaModel: every tensor of the weight plan (model/weight_plan.h, the one list the CPU
// layers read too) converted to bf16 and uploaded once; each packing group (q/k/v, gate/up, the
// experts' gate/up) is stacked side by side so it is one GEMM. With no WeightSource the weights
// are generated on the device (--load-format dummy: normal(0, 0.02), norms 1.0, as DummyWeights).
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/rope.h"
#include "model/step_model.h"
#include "model/weight_plan.h"
#include "runtime/cuda/cuda_model.h"

namespace moeserve::cuda {

class WeightUploader {
 public:
  WeightUploader(CudaModel& model, const WeightSource* source, uint64_t seed, const GpuExec& exec)
      : model_(model), source_(source), seed_(seed), exec_(exec) {}

  Result<uint16_t*> alloc(int64_t count) {
    MS_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::allocate(static_cast<size_t>(count) * sizeof(uint16_t)));
    auto* ptr = buffer.as<uint16_t>();
    model_.weight_bytes_ += buffer.bytes();
    model_.buffers_.push_back(std::move(buffer));
    return ptr;
  }

  // Fills dst [entry.shape] with tensor `expert` of the entry as bf16.
  Status fill(uint16_t* dst, const WeightEntry& entry, int expert = 0) {
    const std::string name = entry.tensor_name(expert);
    const int64_t numel = entry.shape.numel();
    if (source_ == nullptr) {
      const bool is_norm = entry.component == Component::kNorm;
      fill_random_bf16(exec_, dst, numel, seed_ ^ std::hash<std::string>{}(name), is_norm ? 0.0f : 0.02f, 1.0f);
      return ok_status();
    }
    MS_ASSIGN_OR_RETURN(TensorView view, source_->require(name, entry.shape));
    staging_.resize(static_cast<size_t>(numel));
    if (view.dtype == DType::kBF16) {
      std::memcpy(staging_.data(), view.data, view.nbytes());
    } else {
      std::vector<float> f32(static_cast<size_t>(numel));
      convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
      for (size_t i = 0; i < f32.size(); ++i) staging_[i] = f32_to_bf16(f32[i]);
    }
    copy_to_device(dst, staging_.data(), staging_.size() * sizeof(uint16_t), exec_.stream);
    synchronize();  // staging_ is reused by the next tensor
    return ok_status();
  }

  Result<const uint16_t*> tensor(const WeightEntry& entry) {
    MS_ASSIGN_OR_RETURN(uint16_t * ptr, alloc(entry.shape.numel()));
    MS_RETURN_IF_ERROR(fill(ptr, entry));
    return ptr;
  }
  // The tensor of `role` in `layer`, or null when this config has none.
  Result<const uint16_t*> tensor_if_present(const WeightPlan& plan, WeightRole role, int layer) {
    const WeightEntry* entry = plan.find(role, layer);
    if (entry == nullptr) return static_cast<const uint16_t*>(nullptr);
    return tensor(*entry);
  }

  // A float32 copy on the device (the MLA absorption matrix, the router's selection bias).
  Result<const float*> tensor_f32(const WeightEntry& entry) {
    const int64_t numel = entry.shape.numel();
    MS_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::allocate(static_cast<size_t>(numel) * 4));
    float* ptr = buffer.as<float>();
    if (source_ == nullptr) {
      MS_ASSIGN_OR_RETURN(DeviceBuffer bits, DeviceBuffer::allocate(static_cast<size_t>(numel) * 2));
      MS_RETURN_IF_ERROR(fill(bits.as<uint16_t>(), entry));
      to_f32(exec_, bits.as<uint16_t>(), numel, ptr);
      synchronize();
    } else {
      MS_ASSIGN_OR_RETURN(TensorView view, source_->require(entry.tensor_name(), entry.shape));
      std::vector<float> f32(static_cast<size_t>(numel));
      convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
      copy_to_device(ptr, f32.data(), f32.size() * 4, exec_.stream);
      synchronize();
    }
    model_.weight_bytes_ += buffer.bytes();
    model_.buffers_.push_back(std::move(buffer));
    return ptr;
  }

  // Several [rows_i, in] matrices (a packing group, or one tensor) stacked into one
  // [Σ rows_i, in] projection, with their biases stacked likewise when given.
  Result<DeviceLinear> stacked(const std::vector<const WeightEntry*>& weights,
                               const std::vector<const WeightEntry*>& biases = {}) {
    MS_CHECK(!weights.empty() && (biases.empty() || biases.size() == weights.size()));
    const int64_t in = weights.front()->cols();
    int64_t total = 0;
    for (const WeightEntry* entry : weights) total += entry->rows();
    DeviceLinear linear{.out = static_cast<int>(total), .in = static_cast<int>(in)};
    MS_ASSIGN_OR_RETURN(uint16_t * weight, alloc(total * in));
    int64_t row = 0;
    for (const WeightEntry* entry : weights) {
      MS_CHECK(entry->cols() == in);
      MS_RETURN_IF_ERROR(fill(weight + row * in, *entry));
      row += entry->rows();
    }
    linear.weight = weight;
    if (!biases.empty()) {
      MS_ASSIGN_OR_RETURN(uint16_t * bias, alloc(total));
      row = 0;
      for (const WeightEntry* entry : biases) {
        MS_RETURN_IF_ERROR(fill(bias + row, *entry));
        row += entry->rows();
      }
      linear.bias = bias;
    }
    return linear;
  }

  // One projection: the weight of `role` in `layer`, with `bias_role`'s tensor when present.
  Result<DeviceLinear> linear(const WeightPlan& plan, WeightRole role, int layer,
                              std::optional<WeightRole> bias_role = std::nullopt) {
    std::vector<const WeightEntry*> biases;
    if (bias_role && plan.find(*bias_role, layer) != nullptr) biases.push_back(&plan.get(*bias_role, layer));
    return stacked({&plan.get(role, layer)}, biases);
  }

  // A SwiGLU MLP: gate and up stacked ([2I, hidden]), down [hidden, I].
  Result<DeviceMlp> mlp(const WeightPlan& plan, const SwigluRoles& roles, PackGroup gate_up, int layer) {
    DeviceMlp mlp;
    mlp.intermediate = static_cast<int>(plan.get(roles.gate, layer).rows());
    MS_ASSIGN_OR_RETURN(mlp.gate_up, stacked(plan.packed(gate_up, layer)));
    MS_ASSIGN_OR_RETURN(mlp.down, linear(plan, roles.down, layer));
    return mlp;
  }

  // The host staging buffers must outlive the copies queued on the stream.
  void synchronize() { synchronize_stream(exec_.stream); }

 private:
  CudaModel& model_;
  const WeightSource* source_;
  uint64_t seed_;
  GpuExec exec_;
  std::vector<uint16_t> staging_;
};

namespace {

Status load_gqa(WeightUploader& up, const WeightPlan& plan, int layer, DeviceGqa& gqa) {
  MS_ASSIGN_OR_RETURN(gqa.qkv, up.stacked(plan.packed(PackGroup::kQkv, layer), plan.packed(PackGroup::kQkvBias, layer)));
  MS_ASSIGN_OR_RETURN(gqa.o, up.linear(plan, WeightRole::kO, layer, WeightRole::kOBias));
  MS_ASSIGN_OR_RETURN(gqa.q_norm, up.tensor_if_present(plan, WeightRole::kQNorm, layer));
  MS_ASSIGN_OR_RETURN(gqa.k_norm, up.tensor_if_present(plan, WeightRole::kKNorm, layer));
  return ok_status();
}

Status load_mla(WeightUploader& up, const WeightPlan& plan, int layer, DeviceMla& mla) {
  if (plan.find(WeightRole::kQA, layer) != nullptr) {
    MS_ASSIGN_OR_RETURN(mla.q_a, up.linear(plan, WeightRole::kQA, layer));
    MS_ASSIGN_OR_RETURN(mla.q_a_norm, up.tensor(plan.get(WeightRole::kQANorm, layer)));
    MS_ASSIGN_OR_RETURN(mla.q_b, up.linear(plan, WeightRole::kQB, layer));
  } else {
    MS_ASSIGN_OR_RETURN(mla.q, up.linear(plan, WeightRole::kQ, layer));
  }
  MS_ASSIGN_OR_RETURN(mla.kv_a, up.linear(plan, WeightRole::kKvA, layer));
  MS_ASSIGN_OR_RETURN(mla.kv_a_norm, up.tensor(plan.get(WeightRole::kKvANorm, layer)));
  MS_ASSIGN_OR_RETURN(mla.kv_b, up.tensor_f32(plan.get(WeightRole::kKvB, layer)));
  MS_ASSIGN_OR_RETURN(mla.o, up.linear(plan, WeightRole::kO, layer));
  return ok_status();
}

Status load_moe(WeightUploader& up, const ModelConfig& cfg, const WeightPlan& plan, int layer, DeviceMoe& moe) {
  const MoeConfig& m = *cfg.moe;
  moe.router_params = router_params(m);
  moe.num_experts = m.num_experts;
  moe.intermediate = m.expert_intermediate_size;
  MS_ASSIGN_OR_RETURN(moe.router, up.linear(plan, WeightRole::kRouter, layer));
  if (const WeightEntry* bias = plan.find(WeightRole::kRouterBias, layer)) {
    MS_ASSIGN_OR_RETURN(moe.selection_bias, up.tensor_f32(*bias));
  }
  // Experts side by side: gate_up [E, 2I, hidden] (each expert's gate rows, then its up rows),
  // down [E, hidden, I].
  const std::vector<const WeightEntry*> gate_up_entries = plan.packed(PackGroup::kExpertGateUp, layer);
  const WeightEntry& down_entry = plan.get(WeightRole::kExpertDown, layer);
  int64_t gate_up_elements = 0;
  for (const WeightEntry* entry : gate_up_entries) gate_up_elements += entry->shape.numel();
  MS_ASSIGN_OR_RETURN(uint16_t * gate_up, up.alloc(m.num_experts * gate_up_elements));
  MS_ASSIGN_OR_RETURN(uint16_t * down, up.alloc(m.num_experts * down_entry.shape.numel()));
  for (int expert = 0; expert < m.num_experts; ++expert) {
    uint16_t* dst = gate_up + expert * gate_up_elements;
    for (const WeightEntry* entry : gate_up_entries) {
      MS_RETURN_IF_ERROR(up.fill(dst, *entry, expert));
      dst += entry->shape.numel();
    }
    MS_RETURN_IF_ERROR(up.fill(down + expert * down_entry.shape.numel(), down_entry, expert));
  }
  moe.experts_gate_up = gate_up;
  moe.experts_down = down;
  if (plan.find(WeightRole::kSharedGate, layer) != nullptr) {
    moe.has_shared = true;
    MS_ASSIGN_OR_RETURN(moe.shared, up.mlp(plan, kSharedExpertRoles, PackGroup::kSharedGateUp, layer));
    if (plan.find(WeightRole::kSharedExpertGate, layer) != nullptr) {
      MS_ASSIGN_OR_RETURN(moe.shared_gate, up.linear(plan, WeightRole::kSharedExpertGate, layer));
    }
  }
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<CudaModel>> CudaModel::load(const ModelConfig& config, const WeightSource* weights,
                                                   uint64_t seed, const GpuExec& exec, PrefillPrecision precision) {
  if (config.fp8_block_size) return fp8_unsupported_error("CUDA");
  auto model = std::make_unique<CudaModel>();
  model->config_ = config;
  model->precision_ = precision;
  const ModelConfig& cfg = model->config_;
  const WeightPlan plan = WeightPlan::build(cfg);
  WeightUploader up(*model, weights, seed, exec);
  MS_ASSIGN_OR_RETURN(model->embed_, up.tensor(plan.get(WeightRole::kEmbedding)));
  MS_ASSIGN_OR_RETURN(model->final_norm_, up.tensor(plan.get(WeightRole::kFinalNorm)));
  if (cfg.tie_word_embeddings) {
    model->lm_head_ = DeviceLinear{model->embed_, nullptr, cfg.vocab_size, cfg.hidden_size};
  } else {
    MS_ASSIGN_OR_RETURN(model->lm_head_, up.linear(plan, WeightRole::kLmHead, -1));
  }
  const RopeTable rope = build_rope_table(cfg.rope);
  MS_ASSIGN_OR_RETURN(DeviceBuffer inv_freq, DeviceBuffer::allocate(rope.inv_freq.size() * sizeof(float)));
  copy_to_device(inv_freq.data(), rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float), exec.stream);
  up.synchronize();
  model->inv_freq_ = inv_freq.as<float>();
  model->buffers_.push_back(std::move(inv_freq));
  model->rope_half_ = static_cast<int>(rope.inv_freq.size());
  model->rope_attention_factor_ = rope.attention_factor;
  model->rope_interleaved_ = rope.interleaved;
  model->layers_.resize(cfg.num_layers);
  for (int layer_idx = 0; layer_idx < cfg.num_layers; ++layer_idx) {
    DeviceLayer& layer = model->layers_[layer_idx];
    MS_ASSIGN_OR_RETURN(layer.input_norm, up.tensor(plan.get(WeightRole::kInputNorm, layer_idx)));
    MS_ASSIGN_OR_RETURN(layer.post_norm, up.tensor(plan.get(WeightRole::kPostAttentionNorm, layer_idx)));
    if (cfg.is_mla()) {
      MS_RETURN_IF_ERROR(load_mla(up, plan, layer_idx, layer.mla));
    } else {
      MS_RETURN_IF_ERROR(load_gqa(up, plan, layer_idx, layer.gqa));
    }
    layer.is_moe = cfg.layer_is_moe[layer_idx];
    if (layer.is_moe) {
      MS_RETURN_IF_ERROR(load_moe(up, cfg, plan, layer_idx, layer.moe));
    } else {
      MS_ASSIGN_OR_RETURN(layer.mlp, up.mlp(plan, kDenseMlpRoles, PackGroup::kMlpGateUp, layer_idx));
    }
  }
  up.synchronize();
  return model;
}

}  // namespace moeserve::cuda
