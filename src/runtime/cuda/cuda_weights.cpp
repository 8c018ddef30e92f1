// Loading a CudaModel: every weight the CPU DecoderModel reads (same names and shapes, from
// model/registry.h), converted to bf16 and uploaded once; q/k/v, gate/up and the experts'
// matrices are packed side by side so each is one GEMM. With no WeightSource the weights are
// generated on the device (--load-format dummy: normal(0, 0.02), norms 1.0, as DummyWeights).
#include <fmt/format.h>

#include <cstring>
#include <functional>

#include "model/layers/rope.h"
#include "model/registry.h"
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

  // Fills dst [shape] with the named tensor as bf16.
  Status fill(uint16_t* dst, const std::string& name, const Shape& shape) {
    if (source_ == nullptr) {
      const bool is_norm = name.size() >= 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
      fill_random_bf16(exec_, dst, shape.numel(), seed_ ^ std::hash<std::string>{}(name), is_norm ? 0.0f : 0.02f, 1.0f);
      return ok_status();
    }
    MS_ASSIGN_OR_RETURN(TensorView view, source_->require(name, shape));
    staging_.resize(static_cast<size_t>(shape.numel()));
    if (view.dtype == DType::kBF16) {
      std::memcpy(staging_.data(), view.data, view.nbytes());
    } else {
      std::vector<float> f32(static_cast<size_t>(shape.numel()));
      convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
      for (size_t i = 0; i < f32.size(); ++i) staging_[i] = f32_to_bf16(f32[i]);
    }
    copy_to_device(dst, staging_.data(), staging_.size() * sizeof(uint16_t), exec_.stream);
    synchronize();  // staging_ is reused by the next tensor
    return ok_status();
  }

  Result<const uint16_t*> tensor(const std::string& name, const Shape& shape) {
    MS_ASSIGN_OR_RETURN(uint16_t * ptr, alloc(shape.numel()));
    MS_RETURN_IF_ERROR(fill(ptr, name, shape));
    return ptr;
  }

  // A float32 copy on the device (the MLA absorption matrix, the router's selection bias).
  Result<const float*> tensor_f32(const std::string& name, const Shape& shape) {
    MS_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::allocate(static_cast<size_t>(shape.numel()) * 4));
    float* ptr = buffer.as<float>();
    if (source_ == nullptr) {
      MS_ASSIGN_OR_RETURN(DeviceBuffer bits, DeviceBuffer::allocate(static_cast<size_t>(shape.numel()) * 2));
      MS_RETURN_IF_ERROR(fill(bits.as<uint16_t>(), name, shape));
      to_f32(exec_, bits.as<uint16_t>(), shape.numel(), ptr);
      synchronize();
    } else {
      MS_ASSIGN_OR_RETURN(TensorView view, source_->require(name, shape));
      std::vector<float> f32(static_cast<size_t>(shape.numel()));
      convert_to_f32(view.dtype, view.data, f32.data(), f32.size());
      copy_to_device(ptr, f32.data(), f32.size() * 4, exec_.stream);
      synchronize();
    }
    model_.weight_bytes_ += buffer.bytes();
    model_.buffers_.push_back(std::move(buffer));
    return ptr;
  }

  // Rows of several named [rows_i, in] matrices stacked into one [Σ rows_i, in] projection.
  Result<DeviceLinear> stacked(const std::vector<std::string>& names, const std::vector<int64_t>& rows, int64_t in,
                               const std::vector<std::string>& bias_names = {}) {
    int64_t total = 0;
    for (int64_t r : rows) total += r;
    DeviceLinear linear{.out = static_cast<int>(total), .in = static_cast<int>(in)};
    MS_ASSIGN_OR_RETURN(uint16_t * weight, alloc(total * in));
    int64_t row = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      MS_RETURN_IF_ERROR(fill(weight + row * in, names[i], Shape{rows[i], in}));
      row += rows[i];
    }
    linear.weight = weight;
    if (!bias_names.empty()) {
      MS_ASSIGN_OR_RETURN(uint16_t * bias, alloc(total));
      row = 0;
      for (size_t i = 0; i < bias_names.size(); ++i) {
        MS_RETURN_IF_ERROR(fill(bias + row, bias_names[i], Shape{rows[i]}));
        row += rows[i];
      }
      linear.bias = bias;
    }
    return linear;
  }

  Result<DeviceLinear> linear(const std::string& name, int64_t out, int64_t in, bool bias = false) {
    std::vector<std::string> bias_names;
    if (bias) bias_names.push_back(name + ".bias");
    return stacked({name + ".weight"}, {out}, in, bias_names);
  }

  Result<DeviceMlp> mlp(const std::string& prefix, int64_t hidden, int64_t intermediate, const std::string& gate,
                        const std::string& up, const std::string& down) {
    DeviceMlp mlp;
    mlp.intermediate = static_cast<int>(intermediate);
    MS_ASSIGN_OR_RETURN(mlp.gate_up, stacked({prefix + gate + ".weight", prefix + up + ".weight"},
                                             {intermediate, intermediate}, hidden));
    MS_ASSIGN_OR_RETURN(mlp.down, linear(prefix + down, hidden, intermediate));
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

Status load_gqa(WeightUploader& up, const ModelConfig& cfg, const std::string& prefix, DeviceGqa& gqa) {
  const int64_t hidden = cfg.hidden_size;
  const int64_t q_out = static_cast<int64_t>(cfg.num_heads) * cfg.head_dim;
  const int64_t kv_out = static_cast<int64_t>(cfg.num_kv_heads) * cfg.head_dim;
  std::vector<std::string> biases;
  if (cfg.qkv_bias) biases = {prefix + "q_proj.bias", prefix + "k_proj.bias", prefix + "v_proj.bias"};
  MS_ASSIGN_OR_RETURN(gqa.qkv,
                      up.stacked({prefix + "q_proj.weight", prefix + "k_proj.weight", prefix + "v_proj.weight"},
                                 {q_out, kv_out, kv_out}, hidden, biases));
  MS_ASSIGN_OR_RETURN(gqa.o, up.linear(prefix + "o_proj", hidden, q_out, cfg.o_bias));
  if (cfg.qk_norm) {
    MS_ASSIGN_OR_RETURN(gqa.q_norm, up.tensor(prefix + "q_norm.weight", Shape{cfg.head_dim}));
    MS_ASSIGN_OR_RETURN(gqa.k_norm, up.tensor(prefix + "k_norm.weight", Shape{cfg.head_dim}));
  }
  return ok_status();
}

Status load_mla(WeightUploader& up, const ModelConfig& cfg, const std::string& prefix, DeviceMla& mla) {
  const MlaConfig& m = *cfg.mla;
  const int64_t hidden = cfg.hidden_size;
  const int64_t heads = cfg.num_heads;
  if (m.q_lora_rank > 0) {
    MS_ASSIGN_OR_RETURN(mla.q_a, up.linear(prefix + "q_a_proj", m.q_lora_rank, hidden));
    MS_ASSIGN_OR_RETURN(mla.q_a_norm, up.tensor(prefix + "q_a_layernorm.weight", Shape{m.q_lora_rank}));
    MS_ASSIGN_OR_RETURN(mla.q_b, up.linear(prefix + "q_b_proj", heads * m.qk_head_dim(), m.q_lora_rank));
  } else {
    MS_ASSIGN_OR_RETURN(mla.q, up.linear(prefix + "q_proj", heads * m.qk_head_dim(), hidden));
  }
  MS_ASSIGN_OR_RETURN(mla.kv_a, up.linear(prefix + "kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_head_dim, hidden));
  MS_ASSIGN_OR_RETURN(mla.kv_a_norm, up.tensor(prefix + "kv_a_layernorm.weight", Shape{m.kv_lora_rank}));
  MS_ASSIGN_OR_RETURN(mla.kv_b, up.tensor_f32(prefix + "kv_b_proj.weight",
                                              Shape{heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank}));
  MS_ASSIGN_OR_RETURN(mla.o, up.linear(prefix + "o_proj", hidden, heads * m.v_head_dim));
  return ok_status();
}

Status load_moe(WeightUploader& up, const ModelConfig& cfg, const WeightNames& names, const std::string& prefix,
                DeviceMoe& moe) {
  const MoeConfig& m = *cfg.moe;
  const int64_t hidden = cfg.hidden_size;
  const int64_t inter = m.expert_intermediate_size;
  moe.router_params = ops::RouterParams{.top_k = m.top_k,
                                        .sigmoid = m.scoring == RouterScoring::kSigmoid,
                                        .num_groups = m.selection == RouterSelection::kTopK ? 1 : m.num_groups,
                                        .topk_groups = m.topk_groups,
                                        .group_score_top2_sum = m.selection == RouterSelection::kGroupLimitedTop2Sum,
                                        .renormalize = m.norm_topk_prob,
                                        .scaling_factor = m.routed_scaling_factor};
  moe.num_experts = m.num_experts;
  moe.intermediate = static_cast<int>(inter);
  const std::string block = prefix + names.moe_block + ".";
  MS_ASSIGN_OR_RETURN(moe.router, up.linear(block + "gate", m.num_experts, hidden));
  if (m.has_score_correction_bias) {
    MS_ASSIGN_OR_RETURN(moe.selection_bias,
                        up.tensor_f32(block + "gate.e_score_correction_bias", Shape{m.num_experts}));
  }
  MS_ASSIGN_OR_RETURN(uint16_t * gate_up, up.alloc(m.num_experts * 2 * inter * hidden));
  MS_ASSIGN_OR_RETURN(uint16_t * down, up.alloc(m.num_experts * hidden * inter));
  for (int expert = 0; expert < m.num_experts; ++expert) {
    const std::string p = fmt::format("{}experts.{}.", block, expert);
    uint16_t* gu = gate_up + expert * 2 * inter * hidden;
    MS_RETURN_IF_ERROR(up.fill(gu, p + names.expert_gate + ".weight", Shape{inter, hidden}));
    MS_RETURN_IF_ERROR(up.fill(gu + inter * hidden, p + names.expert_up + ".weight", Shape{inter, hidden}));
    MS_RETURN_IF_ERROR(
        up.fill(down + expert * hidden * inter, p + names.expert_down + ".weight", Shape{hidden, inter}));
  }
  moe.experts_gate_up = gate_up;
  moe.experts_down = down;
  if (m.shared_intermediate_size > 0) {
    moe.has_shared = true;
    MS_ASSIGN_OR_RETURN(moe.shared, up.mlp(block + names.shared_expert + ".", hidden, m.shared_intermediate_size,
                                           "gate_proj", "up_proj", "down_proj"));
    if (m.shared_expert_gate) {
      MS_ASSIGN_OR_RETURN(moe.shared_gate, up.linear(block + "shared_expert_gate", 1, hidden));
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
  const int64_t hidden = cfg.hidden_size;
  const WeightNames& names = architecture_definition(cfg.architecture).names;
  WeightUploader up(*model, weights, seed, exec);
  MS_ASSIGN_OR_RETURN(model->embed_, up.tensor("model.embed_tokens.weight", Shape{cfg.vocab_size, hidden}));
  MS_ASSIGN_OR_RETURN(model->final_norm_, up.tensor("model.norm.weight", Shape{hidden}));
  if (cfg.tie_word_embeddings) {
    model->lm_head_ = DeviceLinear{model->embed_, nullptr, cfg.vocab_size, static_cast<int>(hidden)};
  } else {
    MS_ASSIGN_OR_RETURN(model->lm_head_, up.linear("lm_head", cfg.vocab_size, hidden));
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
    const std::string prefix = fmt::format("model.layers.{}.", layer_idx);
    MS_ASSIGN_OR_RETURN(layer.input_norm, up.tensor(prefix + "input_layernorm.weight", Shape{hidden}));
    MS_ASSIGN_OR_RETURN(layer.post_norm, up.tensor(prefix + "post_attention_layernorm.weight", Shape{hidden}));
    if (cfg.is_mla()) {
      MS_RETURN_IF_ERROR(load_mla(up, cfg, prefix + "self_attn.", layer.mla));
    } else {
      MS_RETURN_IF_ERROR(load_gqa(up, cfg, prefix + "self_attn.", layer.gqa));
    }
    layer.is_moe = cfg.layer_is_moe[layer_idx];
    if (layer.is_moe) {
      MS_RETURN_IF_ERROR(load_moe(up, cfg, names, prefix, layer.moe));
    } else {
      MS_ASSIGN_OR_RETURN(layer.mlp,
                          up.mlp(prefix + "mlp.", hidden, cfg.intermediate_size, "gate_proj", "up_proj", "down_proj"));
    }
  }
  up.synchronize();
  return model;
}

}  // namespace moeserve::cuda
