#include "model/decoder_model.h"

namespace moeserve {

Result<std::unique_ptr<DecoderModel>> DecoderModel::load(const ModelConfig& config, const WeightSource& source,
                                                         const ModelOptions& options) {
  if (config.fp8_block_size) return fp8_unsupported_error("CPU");
  MS_RETURN_IF_ERROR(validate_shard_spec(config, options.shard));
  auto model = std::make_unique<DecoderModel>();
  model->config_ = config;
  model->shard_ = options.shard;
  const ModelConfig& cfg = model->config_;  // layers keep a pointer to this copy
  const ShardSpec& shard = model->shard_;
  const WeightPlan plan = WeightPlan::build(cfg);
  const ShardedWeights weights(source, plan, model->owned_weights_);
  MS_ASSIGN_OR_RETURN(model->embed_tokens_, weights.whole(WeightRole::kEmbedding, -1));
  MS_ASSIGN_OR_RETURN(model->final_norm_, weights.whole(WeightRole::kFinalNorm, -1));
  if (cfg.tie_word_embeddings) {
    model->lm_head_ = model->embed_tokens_;
  } else {
    MS_ASSIGN_OR_RETURN(model->lm_head_, weights.whole(WeightRole::kLmHead, -1));
  }
  model->layers_.reserve(cfg.num_layers);
  for (int layer_idx = 0; layer_idx < cfg.num_layers; ++layer_idx) {
    MS_ASSIGN_OR_RETURN(TensorView input_norm, weights.whole(WeightRole::kInputNorm, layer_idx));
    MS_ASSIGN_OR_RETURN(TensorView post_norm, weights.whole(WeightRole::kPostAttentionNorm, layer_idx));
    std::variant<GqaAttention, MlaAttention> attention;
    if (cfg.is_mla()) {
      MS_ASSIGN_OR_RETURN(attention, MlaAttention::load(cfg, weights, layer_idx, options.mla_mode, shard.tp));
    } else {
      MS_ASSIGN_OR_RETURN(attention, GqaAttention::load(cfg, weights, layer_idx, shard.tp));
    }
    std::variant<SwigluMlp, MoeBlock> ffn;
    if (cfg.layer_is_moe[layer_idx]) {
      MS_ASSIGN_OR_RETURN(ffn, MoeBlock::load(cfg, weights, layer_idx, shard));
    } else {
      MS_ASSIGN_OR_RETURN(ffn, SwigluMlp::load(weights, kDenseMlpRoles, layer_idx, shard.tp));
    }
    model->layers_.push_back(Layer{input_norm, post_norm, std::move(attention), std::move(ffn)});
  }
  return model;
}

int DecoderModel::kv_entry_size() const {
  return moeserve::kv_entry_size(config_, shard_.tp);
}

MoeBlock* DecoderModel::moe_block(int layer_idx) { return std::get_if<MoeBlock>(&layers_[layer_idx].ffn); }
const MoeBlock* DecoderModel::moe_block(int layer_idx) const {
  return std::get_if<MoeBlock>(&layers_[layer_idx].ffn);
}

void DecoderModel::forward(ExecContext& exec, const ForwardBatch& batch, const KvMemory& kv,
                           const TensorView& logits, const ParallelComm& comm) const {
  const int64_t tokens = static_cast<int64_t>(batch.token_ids.size());
  const int64_t hidden = config_.hidden_size;
  Tensor residual(DType::kF32, Shape{tokens, hidden});
  Tensor normed(DType::kF32, Shape{tokens, hidden});
  Tensor branch(DType::kF32, Shape{tokens, hidden});
  ops::embedding(exec, embed_tokens_, batch.token_ids, residual.view());
  for (size_t layer_idx = 0; layer_idx < layers_.size(); ++layer_idx) {
    const Layer& layer = layers_[layer_idx];
    LayerContext ctx{exec, batch, kv.layer(static_cast<int>(layer_idx)), static_cast<int>(layer_idx), comm};
    ops::rms_norm(exec, residual.view(), layer.input_norm, config_.rms_norm_eps, normed.view());
    std::visit([&](const auto& attention) { attention.forward(ctx, normed.view(), branch.view()); }, layer.attention);
    ops::add_inplace(exec, residual.view(), branch.view());
    ops::rms_norm(exec, residual.view(), layer.post_attn_norm, config_.rms_norm_eps, normed.view());
    std::visit(
        [&](const auto& ffn) {
          if constexpr (std::is_same_v<std::decay_t<decltype(ffn)>, MoeBlock>) {
            ffn.forward(ctx, normed.view(), branch.view());
          } else {
            ffn.forward(exec, normed.view(), branch.view());
            if (comm.tp != nullptr) comm.tp->all_reduce_sum(branch.view());  // row-parallel down
          }
        },
        layer.ffn);
    ops::add_inplace(exec, residual.view(), branch.view());
  }
  const int64_t rows = static_cast<int64_t>(batch.logit_rows.size());
  Tensor selected(DType::kF32, Shape{rows, hidden});
  ops::gather_rows(exec, residual.view(), batch.logit_rows, selected.view());
  ops::rms_norm(exec, selected.view(), final_norm_, config_.rms_norm_eps, selected.view());
  ops::linear(exec, selected.view(), lm_head_, TensorView{}, logits);
}

}  // namespace moeserve
