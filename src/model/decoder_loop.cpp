// DecoderLoop's step (see decoder_loop.h for its shape). Every buffer comes from the step's
// arena; each layer rewinds the arena to where it started.
#include "model/decoder_loop.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/moe_dispatch.h"
#include "model/step_workspace.h"

namespace moeserve {

using ops::AttentionArgs;
using ops::KvScales;
using ops::MlaDims;
using ops::RmsNormArgs;
using ops::RopeArgs;
using ops::SplitSums;

namespace {

// Opens a profiling span for its lifetime.
class Span {
 public:
  Span(StepBackend& backend, const char* name) : backend_(backend) { backend_.begin_span(name); }
  ~Span() { backend_.end_span(); }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

 private:
  StepBackend& backend_;
};

// A block's output [tokens, hidden] summed over the TP group.
void all_reduce(Communicator* tp, float* x, int tokens, int hidden) {
  if (tp != nullptr) tp->all_reduce_sum(TensorView{x, DType::kF32, Shape{tokens, hidden}});
}

}  // namespace

DecoderLoop::DecoderLoop(const ModelConfig& config, const ModelWeights& weights, const ShardSpec& shard,
                         MlaMode mla_mode)
    : config_(config),
      weights_(weights),
      shard_(shard),
      mla_mode_(mla_mode),
      min_plain_rows_(mla_mode == MlaMode::kNaive ? 1 : kMinMlaPrefillRows),
      heads_(config.num_heads / shard.tp.size),
      kv_heads_(config.is_mla() ? 0 : local_kv_heads(config, shard.tp)) {}

KvScales DecoderLoop::kv_scales(const Step& step, int layer_idx) const {
  return step.kv.fp8 || step.backend.rounds_kv_to_fp8() ? weights_.layers[layer_idx].kv_scales : KvScales{};
}

SplitSums DecoderLoop::gqa(Step& step, int layer_idx, Act x, float* out) const {
  const ModelConfig& c = config_;
  const GqaWeights& w = weights_.layers[layer_idx].gqa;
  const KvScales kv_scales = this->kv_scales(step, layer_idx);
  StepBackend& b = step.backend;
  const int tokens = step.in.tokens;
  const int head_dim = c.head_dim;
  const int q_width = heads_ * head_dim;
  const int row = w.qkv.out;  // q | k | v
  float* qkv = step.arena.alloc<float>(static_cast<size_t>(tokens) * row);
  {
    const Span span(b, "attn.qkv_proj");
    b.linear(x, tokens, w.qkv, qkv);
  }
  float* k = qkv + q_width;
  const bool nope = c.is_nope(layer_idx);
  {
    const Span span(b, "attn.qk_norm_rope_kv_write");
    // Qwen3's q/k RMSNorm, or Llama 4's L2 QK-norm (a unit weight). Llama 4 normalises after
    // rope; rope rotates pairs, which keeps each head's norm, so before is the same.
    if (w.q_norm.present()) {
      b.rms_norm(RmsNormArgs{.x = qkv,
                             .rows = tokens * heads_,
                             .dim = head_dim,
                             .rows_per_token = heads_,
                             .token_stride = row,
                             .weight = w.q_norm.if_bf16(),
                             .weight_f32 = w.q_norm.if_f32(),
                             .eps = c.rms_norm_eps,
                             .out_f32 = qkv});
      b.rms_norm(RmsNormArgs{.x = k,
                             .rows = tokens * kv_heads_,
                             .dim = head_dim,
                             .rows_per_token = kv_heads_,
                             .token_stride = row,
                             .weight = w.k_norm.if_bf16(),
                             .weight_f32 = w.k_norm.if_f32(),
                             .eps = c.rms_norm_eps,
                             .out_f32 = k});
    }
    // The k heads follow the q heads in the fused row with the same stride: one call rotates
    // both, then writes the entry [K | V] (the row past the q heads) into the cache.
    b.rope(RopeArgs{.x = qkv,
                    .tokens = tokens,
                    .heads = heads_ + kv_heads_,
                    .head_stride = head_dim,
                    .token_stride = row,
                    .inv_freq = weights_.inv_freq,
                    .half = nope ? 0 : weights_.rope_half,  // NoPE: the cache write only
                    .attention_factor = weights_.rope_attention_factor,
                    .interleaved = weights_.rope_interleaved,
                    .positions = step.in.positions,
                    .cache = step.kv.layers[layer_idx],
                    .entry_size = step.kv.entry_size,
                    .entry_offset = q_width,
                    .slots = step.in.slots,
                    .cache_fp8 = step.kv.fp8,
                    .cache_scales = kv_scales,
                    .cache_value_begin = kv_heads_ * head_dim});
  }
  float* attended = step.arena.alloc<float>(static_cast<size_t>(tokens) * q_width);
  {
    const Span span(b, "attn.attention");
    b.paged_attention(AttentionArgs{.q = qkv,
                                    .q_stride = row,
                                    .tokens = tokens,
                                    .num_heads = heads_,
                                    .group = heads_ / kv_heads_,
                                    .cache = step.kv.layers[layer_idx],
                                    .cache_fp8 = step.kv.fp8,
                                    .block_size = step.kv.block_size,
                                    .entry_size = step.kv.entry_size,
                                    .key_offset = 0,
                                    .value_offset = kv_heads_ * head_dim,
                                    .kv_head_stride = head_dim,
                                    .key_dim = head_dim,
                                    .value_dim = head_dim,
                                    .scale = c.attention_scale * kv_scales.k,
                                    .value_scale = kv_scales.v,
                                    .sliding_window = c.window(layer_idx),
                                    .chunk_size = c.is_chunked(layer_idx) ? c.attention_chunk_size : 0,
                                    .temperature_floor = nope ? c.attn_temperature_floor : 0.0f,
                                    .temperature_scale = c.attn_temperature_scale,
                                    .block_tables = step.in.block_tables,
                                    .table_offsets = step.in.table_offsets,
                                    .positions = step.in.positions,
                                    .out = attended,
                                    .sinks = w.sinks},
                      &step.in);
  }
  const Span span(b, "attn.o_proj");
  return output_projection(step, attended, w.o, out);
}

SplitSums DecoderLoop::mla(Step& step, int layer_idx, Act x, float* out) const {
  StepBackend& b = step.backend;
  const Span span(b, "attn.mla");
  const ModelConfig& c = config_;
  const MlaConfig& m = *c.mla;
  const float latent_scale = kv_scales(step, layer_idx).k;  // (vLLM's: k_scale for the whole latent entry)
  const MlaWeights& w = weights_.layers[layer_idx].mla;
  const int tokens = step.in.tokens;
  const int heads = heads_;
  const int q_width = heads * m.qk_head_dim();
  float* q = step.arena.alloc<float>(static_cast<size_t>(tokens) * q_width);
  float* q_latent = nullptr;  // [tokens, rq] normalised (q-LoRA)
  if (w.q_a.weight != nullptr) {
    q_latent = step.arena.alloc<float>(static_cast<size_t>(tokens) * m.q_lora_rank);
    b.linear(x, tokens, w.q_a, q_latent);
    b.rms_norm(RmsNormArgs{.x = q_latent,
                           .rows = tokens,
                           .dim = m.q_lora_rank,
                           .weight = w.q_a_norm.if_bf16(),
                           .weight_f32 = w.q_a_norm.if_f32(),
                           .eps = c.rms_norm_eps,
                           .out_f32 = q_latent});
    b.linear(Act{q_latent, nullptr}, tokens, w.q_b, q);
  } else {
    b.linear(x, tokens, w.q, q);
  }
  b.rope(RopeArgs{.x = q,
                  .tokens = tokens,
                  .heads = heads,
                  .head_stride = m.qk_head_dim(),
                  .token_stride = q_width,
                  .rotary_offset = m.qk_nope_head_dim,
                  .inv_freq = weights_.inv_freq,
                  .half = weights_.rope_half,
                  .attention_factor = weights_.rope_attention_factor,
                  .interleaved = weights_.rope_interleaved,
                  .positions = step.in.positions});
  // The cached entry [c | k_pe (| k_index)]: latent normalised, rope key rotated (V3.2: the index
  // key normed and rotated), written before attention. kv_a's row: the entry (| index weights).
  const int latent_key = m.kv_lora_rank + m.qk_rope_head_dim;  // what the absorbed queries read
  const int row = w.kv_a.out;
  float* compressed = step.arena.alloc<float>(static_cast<size_t>(tokens) * row);
  b.linear(x, tokens, w.kv_a, compressed);
  b.rms_norm(RmsNormArgs{.x = compressed,
                         .rows = tokens,
                         .dim = m.kv_lora_rank,
                         .token_stride = row,
                         .weight = w.kv_a_norm.if_bf16(),
                         .weight_f32 = w.kv_a_norm.if_f32(),
                         .eps = c.rms_norm_eps,
                         .out_f32 = compressed});
  RopeArgs rope_key{.x = compressed,
                    .tokens = tokens,
                    .heads = 1,
                    .head_stride = row,
                    .token_stride = row,
                    .rotary_offset = m.kv_lora_rank,
                    .inv_freq = weights_.inv_freq,
                    .half = weights_.rope_half,
                    .attention_factor = weights_.rope_attention_factor,
                    .interleaved = weights_.rope_interleaved,
                    .positions = step.in.positions,
                    .cache = step.kv.layers[layer_idx],
                    .entry_size = step.kv.entry_size,
                    .entry_offset = 0,
                    .slots = step.in.slots,
                    .cache_fp8 = step.kv.fp8,
                    .cache_scales = KvScales{latent_scale, latent_scale}};
  const int32_t* chosen = nullptr;  // V3.2: [tokens, topk] key positions per row
  if (m.indexer) {
    RopeArgs k_pe = rope_key;
    k_pe.cache = nullptr;  // the entry goes to the cache once its index key is in it
    b.rope(k_pe);
    chosen = index_keys(step, layer_idx, q_latent, compressed, rope_key);
  } else {
    b.rope(rope_key);
  }

  const MlaDims dims{.tokens = tokens,
                     .heads = heads,
                     .nope = m.qk_nope_head_dim,
                     .rope = m.qk_rope_head_dim,
                     .value = m.v_head_dim,
                     .rank = m.kv_lora_rank};
  float* attended = step.arena.alloc<float>(static_cast<size_t>(tokens) * heads * m.v_head_dim);
  // Rows [first, first + rows) in the absorbed form: q·W_UK, attention over the latent cache,
  // latent·W_UV.
  auto absorbed = [&](int first, int rows) {
    if (rows == 0) return;
    const size_t mark = step.arena.used();
    MlaDims part = dims;
    part.tokens = rows;
    float* q_absorbed = step.arena.alloc<float>(static_cast<size_t>(rows) * heads * latent_key);
    b.mla_absorb_q(part, q + static_cast<int64_t>(first) * q_width, w.kv_b, q_absorbed);
    float* latent_out = step.arena.alloc<float>(static_cast<size_t>(rows) * heads * m.kv_lora_rank);
    const int topk = m.indexer ? m.indexer->topk : 0;
    const int32_t* rows_keys = chosen != nullptr ? chosen + static_cast<int64_t>(first) * topk : nullptr;
    b.paged_attention(AttentionArgs{.q = q_absorbed,
                                    .q_stride = static_cast<int64_t>(heads) * latent_key,
                                    .tokens = rows,
                                    .num_heads = heads,
                                    .group = heads,
                                    .cache = step.kv.layers[layer_idx],
                                    .cache_fp8 = step.kv.fp8,
                                    .block_size = step.kv.block_size,
                                    .entry_size = step.kv.entry_size,
                                    .key_offset = 0,
                                    .value_offset = 0,
                                    .kv_head_stride = 0,
                                    .key_dim = latent_key,
                                    .value_dim = m.kv_lora_rank,
                                    .scale = c.attention_scale * latent_scale,
                                    .value_scale = latent_scale,
                                    .sliding_window = 0,
                                    .block_tables = step.in.block_tables,
                                    .table_offsets = step.in.table_offsets + first,
                                    .positions = step.in.positions + first,
                                    .out = latent_out,
                                    .key_positions = rows_keys,
                                    .keys_per_row = topk},
                      nullptr);  // a subset of the rows: no query tiles
    b.mla_project_v(part, latent_out, w.kv_b, attended + static_cast<int64_t>(first) * heads * m.v_head_dim);
    step.arena.rewind(mark);
  };
  if (!mla_plain_prefill(step, dims)) {
    absorbed(0, tokens);
    return output_projection(step, attended, w.o, out);
  }
  // Pieces of kMinMlaPrefillRows rows or more in the plain form; runs of smaller ones (decode
  // rows, short chunks) absorbed together.
  int run_first = 0, run_rows = 0;
  for (const StepPiece& piece : step.in.pieces) {
    if (!plain_piece(piece)) {
      if (run_rows == 0) run_first = piece.first_row;
      run_rows += piece.count;
      continue;
    }
    absorbed(run_first, run_rows);
    run_rows = 0;
    const size_t mark = step.arena.used();
    const int ctx = piece.begin + piece.count;
    const int query_tile = b.mla_prefill_query_tile(dims, piece.count, ctx);
    const size_t workspace = b.mla_prefill_workspace_floats(dims, ctx, query_tile);
    b.mla_prefill_attention(
        ops::MlaPrefillArgs{.dims = dims,
                            .q = q,
                            .first_row = piece.first_row,
                            .count = piece.count,
                            .begin = piece.begin,
                            .cache = step.kv.layers[layer_idx],
                            .cache_fp8 = step.kv.fp8,
                            .cache_scale = latent_scale,
                            .entry_size = step.kv.entry_size,
                            .block_size = step.kv.block_size,
                            .block_table = step.in.block_tables + piece.table_offset,
                            .kv_b = w.kv_b,
                            .scale = c.attention_scale,
                            .query_tile = query_tile,
                            .workspace = workspace > 0 ? step.arena.alloc<float>(workspace) : nullptr,
                            .out = attended});
    step.arena.rewind(mark);
  }
  absorbed(run_first, run_rows);
  return output_projection(step, attended, w.o, out);
}

const int32_t* DecoderLoop::index_keys(Step& step, int layer_idx, const float* q_latent, float* compressed,
                                       const RopeArgs& rope_key) const {
  StepBackend& b = step.backend;  // (inside mla()'s "attn.mla" span: profiles keep spans unnested)
  const MlaConfig& m = *config_.mla;
  const IndexerConfig& ix = *m.indexer;
  const MlaWeights& w = weights_.layers[layer_idx].mla;
  const int tokens = step.in.tokens;
  const int row = rope_key.token_stride;
  const int key_offset = m.kv_lora_rank + m.qk_rope_head_dim;  // k_index in the row, then the head weights
  b.layer_norm(ops::LayerNormArgs{.x = compressed + key_offset,
                                  .rows = tokens,
                                  .dim = ix.head_dim,
                                  .stride = row,
                                  .weight = w.indexer_k_norm,
                                  .bias = w.indexer_k_bias,
                                  .eps = 1e-6f,
                                  .out = compressed + key_offset});
  // The indexer rotates the first qk_rope_head_dim dims of its key and query heads by halves
  // (not interleaved as MLA's rope part), then the whole entry goes to the cache.
  RopeArgs index_rope = rope_key;
  index_rope.rotary_offset = key_offset;
  index_rope.interleaved = false;
  b.rope(index_rope);
  const int q_width = ix.heads * ix.head_dim;
  float* q_index = step.arena.alloc<float>(static_cast<size_t>(tokens) * q_width);  // [tokens, Hi, Di]
  b.linear(Act{q_latent, nullptr}, tokens, w.indexer_q, q_index);
  b.rope(RopeArgs{.x = q_index,
                  .tokens = tokens,
                  .heads = ix.heads,
                  .head_stride = ix.head_dim,
                  .token_stride = q_width,
                  .inv_freq = rope_key.inv_freq,
                  .half = rope_key.half,
                  .attention_factor = rope_key.attention_factor,
                  .interleaved = false,
                  .positions = step.in.positions});
  int32_t* chosen = step.arena.alloc<int32_t>(static_cast<size_t>(tokens) * ix.topk);
  b.indexer_topk(ops::IndexerArgs{.q = q_index,
                                  .q_stride = q_width,
                                  .weights = compressed + key_offset + ix.head_dim,
                                  .weights_stride = row,
                                  .tokens = tokens,
                                  .heads = ix.heads,
                                  .head_dim = ix.head_dim,
                                  .scale = 1.0f / std::sqrt(static_cast<float>(ix.head_dim)),
                                  .weight_scale = 1.0f / std::sqrt(static_cast<float>(ix.heads)),
                                  .topk = ix.topk,
                                  .cache = step.kv.layers[layer_idx],
                                  .cache_fp8 = step.kv.fp8,
                                  .block_size = step.kv.block_size,
                                  .entry_size = step.kv.entry_size,
                                  .key_offset = key_offset,
                                  .block_tables = step.in.block_tables,
                                  .table_offsets = step.in.table_offsets,
                                  .positions = step.in.positions,
                                  .out = chosen});
  return chosen;
}

SplitSums DecoderLoop::output_projection(Step& step, const float* attended, const Projection& o, float* out) const {
  if (step.tp == nullptr) return step.backend.linear_unsummed(Act{attended, nullptr}, step.in.tokens, o, out);
  step.backend.linear(Act{attended, nullptr}, step.in.tokens, o, out);  // this rank's heads' part
  all_reduce(step.tp, out, step.in.tokens, o.out);
  return SplitSums{out, 1, 0};
}

bool DecoderLoop::plain_piece(const StepPiece& piece) const {
  if (piece.count < min_plain_rows_) return false;
  // Sparse attention (V3.2): only while every row keeps every key (its context within
  // index_topk, so the attention is dense); otherwise absorbed over the chosen keys, as vLLM's.
  const auto& indexer = config_.mla->indexer;
  return !indexer || piece.begin + piece.count <= indexer->topk;
}

bool DecoderLoop::mla_plain_prefill(const Step& step, const MlaDims& dims) const {
  // The largest plain piece's workspace must fit what the arena has left (the attended rows are
  // allocated already); otherwise the absorbed form, which needs no context-sized buffers, runs.
  if (mla_mode_ == MlaMode::kAbsorbed) return false;
  size_t most = 0;
  bool any = false;
  for (const StepPiece& piece : step.in.pieces) {
    if (!plain_piece(piece)) continue;
    any = true;
    const int ctx = piece.begin + piece.count;
    most = std::max(most, step.backend.mla_prefill_workspace_floats(
                              dims, ctx, step.backend.mla_prefill_query_tile(dims, piece.count, ctx)));
  }
  return any && step.arena.used() + most * sizeof(float) + 1024 <= step.arena.capacity();
}

void DecoderLoop::moe(Step& step, int layer_idx, Act x, float* out, const RmsNormArgs* then) const {
  StepBackend& b = step.backend;
  const MoeWeights& w = weights_.layers[layer_idx].moe;
  const int tokens = step.in.tokens;
  const int experts = w.num_experts;
  const int top_k = w.router_params.top_k;
  const int entries = tokens * top_k;
  const int hidden = config_.hidden_size;
  StepArena& arena = step.arena;
  float* logits = arena.alloc<float>(static_cast<size_t>(tokens) * experts);
  {
    const Span span(b, "moe.router");
    b.router_logits(x, tokens, w.router, logits);
  }
  int32_t* expert_ids = arena.alloc<int32_t>(entries);
  float* expert_weights = arena.alloc<float>(entries);
  int32_t* offsets = arena.alloc<int32_t>(experts + 1);
  int32_t* positions = arena.alloc<int32_t>(entries);
  int32_t* source_rows = arena.alloc<int32_t>(entries);
  {
    const Span span(b, "moe.route_permute");
    b.route(logits, w.selection_bias, tokens, experts, w.router_params, expert_ids, expert_weights);
    b.moe_permute(ops::MoePermuteArgs{.expert_ids = expert_ids,
                                      .entries = entries,
                                      .top_k = top_k,
                                      .experts = experts,
                                      .offsets = offsets,
                                      .positions = positions,
                                      .source_rows = source_rows,
                                      .load_counts = step.load.experts != nullptr
                                                         ? step.load.experts + static_cast<int64_t>(layer_idx) * experts
                                                         : nullptr});
  }
  const float* expert_x = x.f32;  // what the experts read: x [tokens, hidden] by source_rows
  if (config_.moe->scale_expert_input) {  // Llama 4: the experts read rows scaled by their weights
    float* x_scaled = arena.alloc<float>(static_cast<size_t>(entries) * hidden);  // [entries, hidden]
    b.scale_expert_inputs(ops::ScaleExpertInputsArgs{.x = x.f32,
                                                     .hidden = hidden,
                                                     .entries = entries,
                                                     .top_k = top_k,
                                                     .positions = positions,
                                                     .weights = expert_weights,
                                                     .x_scaled = x_scaled,
                                                     .entry_rows = source_rows});
    expert_x = x_scaled;
  }
  float* expert_out = arena.alloc<float>(static_cast<size_t>(entries) * hidden);  // [entries, hidden] permuted
  SplitSums experts_out;
  {
    const Span span(b, "moe.experts");
    experts_out = b.routed_experts(w, expert_x, source_rows, offsets, tokens, expert_out);
  }
  float* shared_out = nullptr;
  float* shared_gate = nullptr;
  if (w.has_shared) {
    const Span span(b, "moe.shared_experts");
    shared_out = arena.alloc<float>(static_cast<size_t>(tokens) * hidden);
    b.mlp(x, tokens, w.shared, shared_out);
    if (w.shared_gate.weight != nullptr) {
      shared_gate = arena.alloc<float>(tokens);
      b.linear(x, tokens, w.shared_gate, shared_gate);
    }
  }
  const Span span(b, "moe.combine");
  ops::MoeCombineArgs combine{.expert_out = experts_out.data,
                              .expert_splits = experts_out.splits,
                              .expert_split_stride = experts_out.split_stride,
                              .positions = positions,
                              .weights = expert_weights,
                              .tokens = tokens,
                              .top_k = top_k,
                              .hidden = hidden,
                              .shared_out = shared_out,
                              .shared_gate_logit = shared_gate,
                              .out = out};
  if (then != nullptr) {
    combine.residual = then->x;
    combine.norm_weight = then->weight;
    combine.norm_weight_f32 = then->weight_f32;
    combine.eps = then->eps;
    combine.normed_f32 = then->out_f32;
    combine.normed_bf16 = then->out_bf16;
  }
  b.moe_combine(combine);
}

namespace {

// The local slot and weight of each (token, k) of rows whose slots are global: other ranks' slots
// go to group num_slots (which routed_experts leaves alone) with weight zero.
void localize_slots(const int32_t* slots, const float* weights, size_t entries, int first_slot, int num_slots,
                    int32_t* local, float* local_weights) {
  for (size_t i = 0; i < entries; ++i) {
    const int slot = slots[i] - first_slot;
    const bool mine = slot >= 0 && slot < num_slots;
    local[i] = mine ? slot : num_slots;
    local_weights[i] = mine ? weights[i] : 0.0f;
  }
}

}  // namespace

void DecoderLoop::run_local_experts(Step& step, const MoeWeights& w, const RoutedTokens& arrived,
                                    const TensorView& partial) const {
  StepBackend& b = step.backend;
  StepArena& arena = step.arena;
  const int n = static_cast<int>(arrived.x.dim(0));
  if (n == 0) return;
  const int top_k = w.router_params.top_k;
  const int hidden = config_.hidden_size;
  const int entries = n * top_k;
  std::vector<int32_t> local(entries);
  std::vector<float> local_weights(entries);
  localize_slots(arrived.slots.data(), arrived.weights.data(), entries, step.ep->rank() * w.num_slots, w.num_slots,
                 local.data(), local_weights.data());
  auto* local_dev = arena.alloc<int32_t>(entries);  // [n, top_k]
  auto* weights_dev = arena.alloc<float>(entries);  // [n, top_k]
  auto* offsets = arena.alloc<int32_t>(w.num_slots + 2);
  auto* positions = arena.alloc<int32_t>(entries);    // [n, top_k]
  auto* source_rows = arena.alloc<int32_t>(entries);  // [entries]
  b.upload(local_dev, local.data(), entries * sizeof(int32_t));
  b.upload(weights_dev, local_weights.data(), entries * sizeof(float));
  b.moe_permute(ops::MoePermuteArgs{.expert_ids = local_dev,
                                    .entries = entries,
                                    .top_k = top_k,
                                    .experts = w.num_slots + 1,
                                    .offsets = offsets,
                                    .positions = positions,
                                    .source_rows = source_rows});
  const float* x = arrived.x.as<float>();
  if (config_.moe->scale_expert_input) {
    float* x_scaled = arena.alloc<float>(size_t(entries) * hidden);  // [entries, hidden] permuted
    b.scale_expert_inputs(ops::ScaleExpertInputsArgs{.x = x,
                                                     .hidden = hidden,
                                                     .entries = entries,
                                                     .top_k = top_k,
                                                     .positions = positions,
                                                     .weights = weights_dev,
                                                     .x_scaled = x_scaled,
                                                     .entry_rows = source_rows});
    x = x_scaled;
  }
  float* y = arena.alloc<float>(size_t(entries) * hidden);  // [entries, hidden] permuted
  const SplitSums experts_out = b.routed_experts(w, x, source_rows, offsets, n, y);
  b.moe_combine(ops::MoeCombineArgs{.expert_out = experts_out.data,
                                    .expert_splits = experts_out.splits,
                                    .expert_split_stride = experts_out.split_stride,
                                    .positions = positions,
                                    .weights = weights_dev,
                                    .tokens = n,
                                    .top_k = top_k,
                                    .hidden = hidden,
                                    .out = partial.as<float>()});
}

void DecoderLoop::moe_expert_parallel(Step& step, int layer_idx, const float* x, float* out) const {
  StepBackend& b = step.backend;
  MS_CHECK_MSG(step.ep != nullptr, "expert parallelism needs the EP communicator");
  const MoeWeights& w = weights_.layers[layer_idx].moe;
  const ExpertMap& map = *w.map;
  const int tokens = step.in.tokens;
  const int top_k = w.router_params.top_k;
  const int hidden = config_.hidden_size;
  StepArena& arena = step.arena;
  // Routing runs on every token on every TP rank (the router is replicated and cheap). A rank with
  // no tokens (forward's idle step) only serves the others' tokens: no op of its own has a row.
  // The dispatch plans on the host: a device backend's routing comes down.
  float* logits = arena.alloc<float>(static_cast<size_t>(tokens) * w.num_experts);
  const size_t entries = static_cast<size_t>(tokens) * top_k;
  int32_t* expert_ids = arena.alloc<int32_t>(entries);
  float* expert_weights = arena.alloc<float>(entries);
  if (tokens > 0) {
    b.router_logits(Act{x, nullptr}, tokens, w.router, logits);
    b.route(logits, w.selection_bias, tokens, w.num_experts, w.router_params, expert_ids, expert_weights);
  }
  std::vector<int32_t> host_ids(entries);
  std::vector<float> host_weights(entries);
  b.download(host_ids.data(), expert_ids, entries * sizeof(int32_t));
  b.download(host_weights.data(), expert_weights, entries * sizeof(float));
  // Physical slot of each (token, k): replica = flattened position mod the replica count.
  std::vector<int32_t> slots(entries);
  for (size_t i = 0; i < entries; ++i) {
    slots[i] = map.slot_for(host_ids[i], static_cast<int>(i));
    if (step.load.experts != nullptr) ++step.load.experts[int64_t(layer_idx) * w.num_experts + host_ids[i]];
    if (step.load.slots != nullptr) ++step.load.slots[int64_t(layer_idx) * map.num_physical() + slots[i]];
  }
  // This TP rank's chunk of the tokens (sequence-parallel MoE): each token is dispatched once.
  const Partition& tp = shard_.tp;
  auto chunk_begin = [&](int rank) { return static_cast<int>(int64_t(tokens) * rank / tp.size); };
  const int begin = chunk_begin(tp.rank);
  const int count = chunk_begin(tp.rank + 1) - begin;
  const size_t chunk_floats = static_cast<size_t>(count) * hidden;
  // Without shared experts the dispatch's sums are the block's output (this rank's rows of it).
  const bool direct = !w.has_shared;
  float* chunk_out = direct && tp.size == 1 ? out : arena.alloc<float>(chunk_floats);  // [count, hidden]
  const float* chunk_x = x + int64_t(begin) * hidden;                                  // [count, hidden]
  const RoutedTokens routed{
      .x = TensorView{const_cast<float*>(chunk_x), DType::kF32, Shape{count, hidden}},
      .slots = std::span<const int32_t>(slots.data() + int64_t(begin) * top_k, size_t(count) * top_k),
      .weights = std::span<const float>(host_weights.data() + int64_t(begin) * top_k, size_t(count) * top_k),
      .top_k = top_k};
  const RunLocalExperts run_local = [&](const RoutedTokens& arrived, const TensorView& partial) {
    run_local_experts(step, w, arrived, partial);
  };
  // (run_local_experts' buffers, twice over as the local MoE block's budget)
  const EpDispatch dispatch{.ep = *step.ep,
                            .backend = b,
                            .run_local_bytes_per_row = 2 * moe_floats_per_token(config_, false) * sizeof(float)};
  const TensorView chunk_view{chunk_out, DType::kF32, Shape{count, hidden}};
  switch (shard_.all2all) {
    case All2AllBackend::kAllgatherReducescatter:
      ep_allgather_reducescatter(dispatch, routed, run_local, chunk_view);
      break;
    case All2AllBackend::kAlltoall:
      ep_alltoall(dispatch, routed, run_local, map.slots_per_rank(), chunk_view);
      break;
  }
  // The shared experts on the chunk's rows (replicated under EP), added as a combine of one
  // "expert" of weight 1 (chunk_out) plus the gated shared output.
  if (count == 0 && (tokens == 0 || step.tp == nullptr)) return;  // no rows here, none to gather
  float* block_out = direct ? chunk_out : tp.size == 1 ? out : arena.alloc<float>(chunk_floats);
  if (count > 0 && w.has_shared) {
    float* shared_out = arena.alloc<float>(chunk_floats);
    b.mlp(Act{chunk_x, nullptr}, count, w.shared, shared_out);
    float* shared_gate = nullptr;
    if (w.shared_gate.weight != nullptr) {
      shared_gate = arena.alloc<float>(count);
      b.linear(Act{chunk_x, nullptr}, count, w.shared_gate, shared_gate);
    }
    std::vector<int32_t> identity(count);
    std::iota(identity.begin(), identity.end(), 0);
    const std::vector<float> ones(count, 1.0f);
    int32_t* identity_buf = arena.alloc<int32_t>(count);
    float* ones_buf = arena.alloc<float>(count);
    b.upload(identity_buf, identity.data(), count * sizeof(int32_t));
    b.upload(ones_buf, ones.data(), count * sizeof(float));
    b.moe_combine(ops::MoeCombineArgs{.expert_out = chunk_out,
                                      .positions = identity_buf,
                                      .weights = ones_buf,
                                      .tokens = count,
                                      .top_k = 1,
                                      .hidden = hidden,
                                      .shared_out = shared_out,
                                      .shared_gate_logit = shared_gate,
                                      .out = block_out});
  }
  // Without a TP group (one rank's start-up profile run) the other ranks' rows stay unwritten.
  if (tp.size > 1 && step.tp != nullptr) {
    std::vector<int64_t> rows(tp.size);
    for (int rank = 0; rank < tp.size; ++rank) rows[rank] = chunk_begin(rank + 1) - chunk_begin(rank);
    step.tp->all_gather_rows(TensorView{block_out, DType::kF32, Shape{count, hidden}}, rows,
                             TensorView{out, DType::kF32, Shape{tokens, hidden}});
  }
}

void DecoderLoop::forward(StepBackend& backend, const StepInputs& inputs, const KvLayers& kv, float* logits,
                          const LoadCounters& counters, const ParallelComm& comm) const {
  Communicator* tp_comm = comm.tp;
  StepArena& arena = backend.arena();
  const size_t start = arena.used();
  Step step{backend, arena, inputs, kv, counters, comm.tp, comm.ep};
  const ModelConfig& c = config_;
  const int tokens = inputs.tokens;
  if (tokens == 0) {
    // An idle rank (an empty DP replica's): with expert parallelism it takes part in each MoE
    // layer's dispatch, running its experts for the other ranks' tokens; nothing else has a row.
    for (int layer_idx = 0; layer_idx < c.num_layers && shard_.expert_parallel; ++layer_idx) {
      if (weights_.layers[layer_idx].is_moe) moe_expert_parallel(step, layer_idx, nullptr, nullptr);
    }
    arena.rewind(start);
    return;
  }
  const int hidden = c.hidden_size;
  const size_t activations = static_cast<size_t>(tokens) * hidden;
  float* residual = arena.alloc<float>(activations);
  float* branch = arena.alloc<float>(activations);
  float* normed = arena.alloc<float>(activations);
  // bf16 copies of the normed activations, for backends whose GEMMs take bf16 activations.
  uint16_t* normed_bf16 = backend.bf16_activations(tokens) ? arena.alloc<uint16_t>(activations) : nullptr;
  {
    const Span span(backend, "embedding");
    backend.embedding(weights_.embed, hidden, inputs.token_ids, tokens, residual);
  }
  // The residual stream: branch holds a block's output until the next norm adds it, except
  // after an MoE block, whose combine adds it and computes the next norm itself (normed_ready).
  bool branch_pending = false;
  bool normed_ready = false;
  for (int layer_idx = 0; layer_idx < c.num_layers; ++layer_idx) {
    const LayerWeights& layer = weights_.layers[layer_idx];
    const size_t mark = arena.used();
    if (!normed_ready) {
      const Span span(backend, "norm");
      backend.rms_norm(RmsNormArgs{.x = residual,
                                   .add = branch_pending ? branch : nullptr,
                                   .rows = tokens,
                                   .dim = hidden,
                                   .weight = layer.input_norm.if_bf16(),
                                   .weight_f32 = layer.input_norm.if_f32(),
                                   .eps = c.rms_norm_eps,
                                   .out_f32 = normed,
                                   .out_bf16 = normed_bf16});
    }
    const Act x{normed, normed_bf16};
    const SplitSums attended = c.is_mla() ? mla(step, layer_idx, x, branch) : gqa(step, layer_idx, x, branch);
    {
      const Span span(backend, "norm");
      backend.rms_norm(RmsNormArgs{.x = residual,
                                   .add = attended.data,
                                   .add_splits = attended.splits,
                                   .add_split_stride = attended.split_stride,
                                   .rows = tokens,
                                   .dim = hidden,
                                   .weight = layer.post_norm.if_bf16(),
                                   .weight_f32 = layer.post_norm.if_f32(),
                                   .eps = c.rms_norm_eps,
                                   .out_f32 = normed,
                                   .out_bf16 = normed_bf16});
    }
    if (layer.is_moe && shard_.expert_parallel) {
      const Span span(backend, "moe.expert_parallel");
      moe_expert_parallel(step, layer_idx, normed, branch);
      branch_pending = true;
      normed_ready = false;
    } else if (layer.is_moe && tp_comm != nullptr) {  // experts TP-sliced: the combine is this rank's part
      moe(step, layer_idx, x, branch, nullptr);
      all_reduce(tp_comm, branch, tokens, hidden);
      branch_pending = true;
      normed_ready = false;
    } else if (layer.is_moe) {
      const bool last = layer_idx + 1 == c.num_layers;
      const WeightVector& next_weight = last ? weights_.final_norm : weights_.layers[layer_idx + 1].input_norm;
      const RmsNormArgs next_norm{.x = residual,
                                  .rows = tokens,
                                  .dim = hidden,
                                  .weight = next_weight.if_bf16(),
                                  .weight_f32 = next_weight.if_f32(),
                                  .eps = c.rms_norm_eps,
                                  .out_f32 = normed,
                                  .out_bf16 = last ? nullptr : normed_bf16};
      moe(step, layer_idx, x, branch, &next_norm);
      branch_pending = false;
      normed_ready = true;
    } else {
      const Span span(backend, "mlp");
      backend.mlp(x, tokens, layer.mlp, branch);
      all_reduce(tp_comm, branch, tokens, hidden);  // row-parallel down
      branch_pending = true;
      normed_ready = false;
    }
    arena.rewind(mark);
  }
  const Span span(backend, "final_norm_lm_head");
  if (!normed_ready) {
    backend.rms_norm(RmsNormArgs{.x = residual,
                                 .add = branch_pending ? branch : nullptr,
                                 .rows = tokens,
                                 .dim = hidden,
                                 .weight = weights_.final_norm.if_bf16(),
                                 .weight_f32 = weights_.final_norm.if_f32(),
                                 .eps = c.rms_norm_eps,
                                 .out_f32 = normed});
  }
  const int rows = inputs.logit_rows;
  if (rows > 0) {
    float* selected = arena.alloc<float>(static_cast<size_t>(rows) * hidden);
    uint16_t* selected_bf16 =
        backend.bf16_activations(rows) ? arena.alloc<uint16_t>(static_cast<size_t>(rows) * hidden) : nullptr;
    backend.gather_rows(normed, hidden, inputs.logit_row_ids, rows, selected, selected_bf16);
    backend.linear(Act{selected, selected_bf16}, rows, weights_.lm_head, logits);
  }
  arena.rewind(start);
}

}  // namespace moeserve
