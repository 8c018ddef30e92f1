// CudaModel's step: the decoder loop over kernels/cuda (see cuda_model.h for the shape and the
// precision rules). Every buffer comes from the step's arena; each layer rewinds the arena to
// where it started, which is safe because all work is ordered on one stream.
#include "runtime/cuda/cuda_model.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "model/parallel.h"

namespace moeserve::cuda {

void OpProfile::begin(const char* name, void* stream) {
  spans_.push_back(Span{name, std::make_unique<EventTimer>()});
  spans_.back().timer->start(stream);
}

void OpProfile::end(void* stream) { spans_.back().timer->stop(stream); }

std::vector<std::pair<std::string, double>> OpProfile::totals() const {
  std::vector<std::pair<std::string, double>> out;
  for (const Span& span : spans_) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& entry) { return entry.first == span.name; });
    if (it == out.end()) it = out.insert(out.end(), {span.name, 0.0});
    it->second += span.timer->seconds();
  }
  return out;
}

int CudaModel::kv_entry_size() const {
  return moeserve::kv_entry_size(config_);
}

size_t CudaModel::workspace_bytes(int max_tokens) const {
  const ModelConfig& c = config_;
  const int64_t t = max_tokens;
  const int64_t hidden = c.hidden_size;
  int64_t attn = 0;  // floats per token inside attention
  if (c.is_mla()) {
    const MlaConfig& m = *c.mla;
    attn = m.q_lora_rank +
           c.num_heads * (m.qk_head_dim() + (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank + m.v_head_dim) +
           m.kv_lora_rank + m.qk_rope_head_dim;
  } else {
    attn = static_cast<int64_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim;
  }
  int64_t ffn = 3 * static_cast<int64_t>(c.intermediate_size);
  if (c.moe) {
    const MoeConfig& m = *c.moe;
    // (+ 8 top_k hidden: small_gemm's / mma_gemm's split-K partial sums of the down projection,
    // 8 splits at most; + moe_permute's per-chunk counts of prefill-sized plans)
    ffn = std::max<int64_t>(ffn, 4 * m.num_experts + 8 * m.top_k + m.top_k * m.num_experts / kMoePermuteChunk + 1 +
                                     m.top_k * (10 * hidden + 3 * m.expert_intermediate_size) +
                                     3 * m.shared_intermediate_size + hidden + 1);
  }
  const int64_t widest = std::max<int64_t>({hidden, attn, ffn});
  const int64_t floats = t * (4 * hidden + attn + ffn + widest /* bf16 copies, generously */) + t * c.vocab_size;
  // + the plain MLA prefill's score tile (its expanded keys and values fit in what the absorbed
  // form reserves per token above, for contexts up to max_tokens).
  const size_t mla_scores = c.is_mla() ? kMlaScoreFloats * sizeof(float) : 0;
  // + the float32 router weights of a prefill-sized step (moe()).
  const size_t router_f32 = c.moe ? size_t(c.moe->num_experts) * c.hidden_size * sizeof(float) : 0;
  return static_cast<size_t>(floats) * sizeof(float) + mla_scores + router_f32 + (size_t{64} << 20);
}

bool CudaModel::experts_stream(int tokens) const {
  if (!config_.moe) return true;
  if (tokens <= kMaxSmallGroupedRows) return true;  // small_gemm takes any K
  return tokens <= kMaxMmaRows && mma_gemm_supported(config_.hidden_size) &&
         mma_gemm_supported(config_.moe->expert_intermediate_size);
}

void CudaModel::grouped_gemm(Step& step, const GemmArgs& args) const {
  if (args.rows <= kMaxSmallGroupedRows) {
    cuda_core_gemm(step, args);  // splits K of the down projection (few blocks at 1-4 tokens)
    return;
  }
  tensor_core_gemm(step, args);
}

void CudaModel::cuda_core_gemm(Step& step, const GemmArgs& args) const {
  const size_t mark = step.arena.used();
  float* workspace = step.arena.alloc<float>(std::max<size_t>(1, small_gemm_workspace_floats(args)));
  small_gemm(step.exec, args, workspace);
  step.arena.rewind(mark);
}

SplitSums CudaModel::cuda_core_gemm_unsummed(Step& step, const GemmArgs& args) const {
  float* workspace = step.arena.alloc<float>(std::max<size_t>(1, small_gemm_workspace_floats(args)));
  return small_gemm_unsummed(step.exec, args, workspace);
}

void CudaModel::tensor_core_gemm(Step& step, const GemmArgs& args) const {
  const size_t mark = step.arena.used();
  float* workspace = step.arena.alloc<float>(std::max<size_t>(1, mma_gemm_workspace_floats(args)));
  mma_gemm(step.exec, args, precision_ == PrefillPrecision::kSplitBf16, workspace);
  step.arena.rewind(mark);
}

void CudaModel::linear(Step& step, Act x, int rows, const DeviceLinear& w, float* out) const {
  const GemmArgs args{
      .x = x.f32, .rows = rows, .k = w.in, .n = w.out, .weight = w.weight, .bias = w.bias, .out = out};
  if (rows <= kMaxSmallDenseRows || (rows <= kSmallTile && !mma_gemm_supported(w.in))) {
    cuda_core_gemm(step, args);
  } else if (rows <= kMaxMmaDenseRows) {
    tensor_core_gemm(step, args);
  } else {
    gemm(step, x, rows, w.weight, w.bias, w.out, w.in, out);
  }
}

SplitSums CudaModel::linear_unsummed(Step& step, Act x, int rows, const DeviceLinear& w, float* out) const {
  if (rows > kMaxSmallDenseRows || w.bias != nullptr) {
    linear(step, x, rows, w, out);
    return SplitSums{out, 1, 0};
  }
  return cuda_core_gemm_unsummed(
      step, GemmArgs{.x = x.f32, .rows = rows, .k = w.in, .n = w.out, .weight = w.weight, .out = out});
}

void CudaModel::gemm(Step& step, Act x, int rows, const uint16_t* w, const uint16_t* bias, int n, int k,
                     float* out) const {
  const int64_t count = static_cast<int64_t>(rows) * k;
  if (precision_ == PrefillPrecision::kSplitBf16) {
    MS_CHECK(x.f32 != nullptr);
    const size_t mark = step.arena.used();
    uint16_t* hi = step.arena.alloc<uint16_t>(count);
    uint16_t* lo = step.arena.alloc<uint16_t>(count);
    to_bf16_split(step.exec, x.f32, count, hi, lo);
    gemm_bf16(step.exec, hi, w, bias, rows, n, k, out);
    gemm_bf16(step.exec, lo, w, nullptr, rows, n, k, out, /*accumulate=*/true);
    step.arena.rewind(mark);
    return;
  }
  const uint16_t* x_bf16 = x.bf16;
  const size_t mark = step.arena.used();
  if (x_bf16 == nullptr) {
    uint16_t* converted = step.arena.alloc<uint16_t>(count);
    to_bf16(step.exec, x.f32, count, converted);
    x_bf16 = converted;
  }
  gemm_bf16(step.exec, x_bf16, w, bias, rows, n, k, out);
  step.arena.rewind(mark);
}

// out [rows, hidden] = down(silu(gate(x)) · up(x)).
void CudaModel::mlp(Step& step, Act x, int rows, const DeviceMlp& w, float* out) const {
  const int inter = w.intermediate;
  if (rows <= kMaxSmallDenseRows) {
    float* act = step.arena.alloc<float>(static_cast<size_t>(rows) * inter);
    small_gemm(step.exec, GemmArgs{.x = x.f32,
                                        .rows = rows,
                                        .k = w.gate_up.in,
                                        .n = inter,
                                        .weight = w.gate_up.weight,
                                        .swiglu = true,
                                        .out = act});
    linear(step, Act{act, nullptr}, rows, w.down, out);
    return;
  }
  float* gate_up = step.arena.alloc<float>(static_cast<size_t>(rows) * 2 * inter);
  linear(step, x, rows, w.gate_up, gate_up);
  const bool split = precision_ == PrefillPrecision::kSplitBf16;
  float* act = split ? step.arena.alloc<float>(static_cast<size_t>(rows) * inter) : nullptr;
  uint16_t* act_bf16 = split ? nullptr : step.arena.alloc<uint16_t>(static_cast<size_t>(rows) * inter);
  silu_mul(step.exec, gate_up, rows, inter, act, act_bf16);
  gemm(step, Act{act, act_bf16}, rows, w.down.weight, w.down.bias, w.down.out, w.down.in, out);
}

SplitSums CudaModel::gqa(Step& step, int layer_idx, Act x, float* out) const {
  const ModelConfig& c = config_;
  const DeviceGqa& w = layers_[layer_idx].gqa;
  const int tokens = step.in.tokens;
  const int head_dim = c.head_dim;
  const int q_width = c.num_heads * head_dim;
  const int row = w.qkv.out;  // q | k | v
  float* qkv = step.arena.alloc<float>(static_cast<size_t>(tokens) * row);
  std::optional<ProfileScope> scope(std::in_place, step.profile, step.exec.stream, "attn.qkv_proj");
  linear(step, x, tokens, w.qkv, qkv);
  scope.emplace(step.profile, step.exec.stream, "attn.qk_norm_rope_kv_write");
  float* k = qkv + q_width;
  if (w.q_norm != nullptr) {
    rms_norm(step.exec, RmsNormArgs{.x = qkv,
                                    .rows = tokens * c.num_heads,
                                    .dim = head_dim,
                                    .rows_per_token = c.num_heads,
                                    .token_stride = row,
                                    .weight = w.q_norm,
                                    .eps = c.rms_norm_eps,
                                    .out_f32 = qkv});
    rms_norm(step.exec, RmsNormArgs{.x = k,
                                    .rows = tokens * c.num_kv_heads,
                                    .dim = head_dim,
                                    .rows_per_token = c.num_kv_heads,
                                    .token_stride = row,
                                    .weight = w.k_norm,
                                    .eps = c.rms_norm_eps,
                                    .out_f32 = k});
  }
  // The k heads follow the q heads in the fused row with the same stride: one launch rotates
  // both, then writes the entry [K | V] (the row past the q heads) into the cache.
  const RopeArgs rope_args{.x = qkv,
                           .tokens = tokens,
                           .heads = c.num_heads + c.num_kv_heads,
                           .head_stride = head_dim,
                           .token_stride = row,
                           .inv_freq = inv_freq_,
                           .half = rope_half_,
                           .attention_factor = rope_attention_factor_,
                           .interleaved = rope_interleaved_,
                           .positions = step.in.positions,
                           .cache = step.kv.layers[layer_idx],
                           .entry_size = step.kv.entry_size,
                           .entry_offset = q_width,
                           .slots = step.in.slots};
  rope(step.exec, rope_args);
  float* attended = step.arena.alloc<float>(static_cast<size_t>(tokens) * q_width);
  scope.emplace(step.profile, step.exec.stream, "attn.attention");
  const AttentionArgs attention{.q = qkv,
                                .q_stride = row,
                                .tokens = tokens,
                                .num_heads = c.num_heads,
                                .group = c.num_heads / c.num_kv_heads,
                                .cache = step.kv.layers[layer_idx],
                                .block_size = step.kv.block_size,
                                .entry_size = step.kv.entry_size,
                                .key_offset = 0,
                                .value_offset = c.num_kv_heads * head_dim,
                                .kv_head_stride = head_dim,
                                .key_dim = head_dim,
                                .value_dim = head_dim,
                                .scale = c.attention_scale,
                                .sliding_window = c.sliding_window,
                                .block_tables = step.in.block_tables,
                                .table_offsets = step.in.table_offsets,
                                .positions = step.in.positions,
                                .out = attended};
  // The tiled kernel pays off when its query tiles hold several rows (prefill); decode rows
  // (one per sequence) are better spread one block per (row, head).
  const bool tiled = tokens > kSmallTile && step.in.num_query_tiles * 4 <= tokens;
  const int tile_rows = step.in.query_tile_rows;
  if (tiled && prefill_attention_mma_supported(attention, tile_rows)) {
    paged_attention_prefill_mma(step.exec, attention, step.in.query_tiles, step.in.num_query_tiles, tile_rows,
                                precision_ == PrefillPrecision::kSplitBf16);
  } else if (tiled && prefill_attention_supported(attention, tile_rows)) {
    paged_attention_prefill(step.exec, attention, step.in.query_tiles, step.in.num_query_tiles, tile_rows);
  } else {
    paged_attention(step.exec, attention);
  }
  scope.emplace(step.profile, step.exec.stream, "attn.o_proj");
  return linear_unsummed(step, Act{attended, nullptr}, tokens, w.o, out);
}

SplitSums CudaModel::mla(Step& step, int layer_idx, Act x, float* out) const {
  const ProfileScope scope(step.profile, step.exec.stream, "attn.mla");
  const ModelConfig& c = config_;
  const MlaConfig& m = *c.mla;
  const DeviceMla& w = layers_[layer_idx].mla;
  const int tokens = step.in.tokens;
  const int heads = c.num_heads;
  const int q_width = heads * m.qk_head_dim();
  float* q = step.arena.alloc<float>(static_cast<size_t>(tokens) * q_width);
  if (w.q_a.weight != nullptr) {
    float* q_latent = step.arena.alloc<float>(static_cast<size_t>(tokens) * m.q_lora_rank);
    linear(step, x, tokens, w.q_a, q_latent);
    rms_norm(step.exec, RmsNormArgs{.x = q_latent,
                                    .rows = tokens,
                                    .dim = m.q_lora_rank,
                                    .weight = w.q_a_norm,
                                    .eps = c.rms_norm_eps,
                                    .out_f32 = q_latent});
    linear(step, Act{q_latent, nullptr}, tokens, w.q_b, q);
  } else {
    linear(step, x, tokens, w.q, q);
  }
  RopeArgs rope_args{.x = q,
                     .tokens = tokens,
                     .heads = heads,
                     .head_stride = m.qk_head_dim(),
                     .token_stride = q_width,
                     .rotary_offset = m.qk_nope_head_dim,
                     .inv_freq = inv_freq_,
                     .half = rope_half_,
                     .attention_factor = rope_attention_factor_,
                     .interleaved = rope_interleaved_,
                     .positions = step.in.positions};
  rope(step.exec, rope_args);
  // The cached entry [c | k_pe]: latent normalised, rope key rotated, written before attention.
  const int entry = m.kv_lora_rank + m.qk_rope_head_dim;
  float* compressed = step.arena.alloc<float>(static_cast<size_t>(tokens) * entry);
  linear(step, x, tokens, w.kv_a, compressed);
  rms_norm(step.exec, RmsNormArgs{.x = compressed,
                                  .rows = tokens,
                                  .dim = m.kv_lora_rank,
                                  .token_stride = entry,
                                  .weight = w.kv_a_norm,
                                  .eps = c.rms_norm_eps,
                                  .out_f32 = compressed});
  rope_args = RopeArgs{.x = compressed,
                       .tokens = tokens,
                       .heads = 1,
                       .head_stride = entry,
                       .token_stride = entry,
                       .rotary_offset = m.kv_lora_rank,
                       .inv_freq = inv_freq_,
                       .half = rope_half_,
                       .attention_factor = rope_attention_factor_,
                       .interleaved = rope_interleaved_,
                       .positions = step.in.positions,
                       .cache = step.kv.layers[layer_idx],
                       .entry_size = entry,
                       .entry_offset = 0,
                       .slots = step.in.slots};
  rope(step.exec, rope_args);

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
    float* q_absorbed = step.arena.alloc<float>(static_cast<size_t>(rows) * heads * entry);
    mla_absorb_q(step.exec, part, q + static_cast<int64_t>(first) * q_width, w.kv_b, q_absorbed);
    float* latent_out = step.arena.alloc<float>(static_cast<size_t>(rows) * heads * m.kv_lora_rank);
    paged_attention(step.exec, AttentionArgs{.q = q_absorbed,
                                             .q_stride = static_cast<int64_t>(heads) * entry,
                                             .tokens = rows,
                                             .num_heads = heads,
                                             .group = heads,
                                             .cache = step.kv.layers[layer_idx],
                                             .block_size = step.kv.block_size,
                                             .entry_size = entry,
                                             .key_offset = 0,
                                             .value_offset = 0,
                                             .kv_head_stride = 0,
                                             .key_dim = entry,
                                             .value_dim = m.kv_lora_rank,
                                             .scale = c.attention_scale,
                                             .sliding_window = 0,
                                             .block_tables = step.in.block_tables,
                                             .table_offsets = step.in.table_offsets + first,
                                             .positions = step.in.positions + first,
                                             .out = latent_out});
    mla_project_v(step.exec, part, latent_out, w.kv_b,
                  attended + static_cast<int64_t>(first) * heads * m.v_head_dim);
    step.arena.rewind(mark);
  };
  if (!mla_plain_prefill(step, dims)) {
    absorbed(0, tokens);
    return linear_unsummed(step, Act{attended, nullptr}, tokens, w.o, out);
  }
  // Pieces of kMinMlaPrefillRows rows or more in the plain form; runs of smaller ones (decode
  // rows, short chunks) absorbed together.
  int run_first = 0, run_rows = 0;
  for (const StepPiece& piece : step.in.pieces) {
    if (piece.count < kMinMlaPrefillRows) {
      if (run_rows == 0) run_first = piece.first_row;
      run_rows += piece.count;
      continue;
    }
    absorbed(run_first, run_rows);
    run_rows = 0;
    const size_t mark = step.arena.used();
    const int ctx = piece.begin + piece.count;
    const int query_tile = mla_prefill_query_tile(dims, piece.count, ctx, kMlaScoreFloats);
    mla_prefill_attention(step.exec, MlaPrefillArgs{.dims = dims,
                                                    .q = q,
                                                    .first_row = piece.first_row,
                                                    .count = piece.count,
                                                    .begin = piece.begin,
                                                    .cache = step.kv.layers[layer_idx],
                                                    .block_size = step.kv.block_size,
                                                    .block_table = step.in.block_tables + piece.table_offset,
                                                    .kv_b = w.kv_b,
                                                    .scale = c.attention_scale,
                                                    .query_tile = query_tile,
                                                    .workspace = step.arena.alloc<float>(
                                                        mla_prefill_workspace_floats(dims, ctx, query_tile)),
                                                    .out = attended});
    step.arena.rewind(mark);
  }
  absorbed(run_first, run_rows);
  return linear_unsummed(step, Act{attended, nullptr}, tokens, w.o, out);
}

bool CudaModel::mla_plain_prefill(const Step& step, const MlaDims& dims) const {
  // The largest plain piece's workspace must fit what the arena has left (the attended rows are
  // allocated already); otherwise the absorbed form, which needs no context-sized buffers, runs.
  size_t most = 0;
  for (const StepPiece& piece : step.in.pieces) {
    if (piece.count < kMinMlaPrefillRows) continue;
    const int ctx = piece.begin + piece.count;
    most = std::max(most, mla_prefill_workspace_floats(
                              dims, ctx, mla_prefill_query_tile(dims, piece.count, ctx, kMlaScoreFloats)));
  }
  return most > 0 && step.arena.used() + most * sizeof(float) + 1024 <= step.arena.capacity();
}

void CudaModel::forward(const GpuExec& exec, DeviceArena& arena, const StepInputs& inputs, const DeviceKv& kv,
                        float* logits, int64_t* expert_load, OpProfile* profile) const {
  Step step{exec, arena, inputs, kv, expert_load, profile};
  const ModelConfig& c = config_;
  const int tokens = inputs.tokens;
  const int hidden = c.hidden_size;
  const size_t activations = static_cast<size_t>(tokens) * hidden;
  float* residual = arena.alloc<float>(activations);
  float* branch = arena.alloc<float>(activations);
  float* normed = arena.alloc<float>(activations);
  // bf16 copies of the normed activations feed cuBLAS directly in the plain bf16 mode.
  const bool plain = precision_ == PrefillPrecision::kBf16;
  uint16_t* normed_bf16 = plain && tokens > kMaxSmallDenseRows ? arena.alloc<uint16_t>(activations) : nullptr;
  {
    const ProfileScope scope(profile, exec.stream, "embedding");
    embedding(exec, embed_, hidden, inputs.token_ids, tokens, residual);
  }
  // The residual stream: branch holds a block's output until the next norm adds it, except
  // after an MoE block, whose combine adds it and computes the next norm itself (normed_ready).
  bool branch_pending = false;
  bool normed_ready = false;
  for (int layer_idx = 0; layer_idx < c.num_layers; ++layer_idx) {
    const DeviceLayer& layer = layers_[layer_idx];
    const size_t mark = arena.used();
    std::optional<ProfileScope> scope;
    if (!normed_ready) {
      scope.emplace(profile, exec.stream, "norm");
      rms_norm(exec, RmsNormArgs{.x = residual,
                                 .add = branch_pending ? branch : nullptr,
                                 .rows = tokens,
                                 .dim = hidden,
                                 .weight = layer.input_norm,
                                 .eps = c.rms_norm_eps,
                                 .out_f32 = normed,
                                 .out_bf16 = normed_bf16});
      scope.reset();
    }
    const Act x{normed, normed_bf16};
    const SplitSums attended = c.is_mla() ? mla(step, layer_idx, x, branch) : gqa(step, layer_idx, x, branch);
    scope.emplace(profile, exec.stream, "norm");
    rms_norm(exec, RmsNormArgs{.x = residual,
                               .add = attended.data,
                               .add_splits = attended.splits,
                               .add_split_stride = attended.split_stride,
                               .rows = tokens,
                               .dim = hidden,
                               .weight = layer.post_norm,
                               .eps = c.rms_norm_eps,
                               .out_f32 = normed,
                               .out_bf16 = normed_bf16});
    scope.reset();
    if (layer.is_moe) {
      const bool last = layer_idx + 1 == c.num_layers;
      const RmsNormArgs next_norm{.x = residual,
                                  .rows = tokens,
                                  .dim = hidden,
                                  .weight = last ? final_norm_ : layers_[layer_idx + 1].input_norm,
                                  .eps = c.rms_norm_eps,
                                  .out_f32 = normed,
                                  .out_bf16 = last ? nullptr : normed_bf16};
      moe(step, layer_idx, x, branch, &next_norm);
      branch_pending = false;
      normed_ready = true;
    } else {
      scope.emplace(profile, exec.stream, "mlp");
      mlp(step, x, tokens, layer.mlp, branch);
      branch_pending = true;
      normed_ready = false;
    }
    scope.reset();
    arena.rewind(mark);
  }
  const ProfileScope scope(profile, exec.stream, "final_norm_lm_head");
  if (!normed_ready) {
    rms_norm(exec, RmsNormArgs{.x = residual,
                               .add = branch_pending ? branch : nullptr,
                               .rows = tokens,
                               .dim = hidden,
                               .weight = final_norm_,
                               .eps = c.rms_norm_eps,
                               .out_f32 = normed});
  }
  const int rows = inputs.logit_rows;
  if (rows == 0) return;
  float* selected = arena.alloc<float>(static_cast<size_t>(rows) * hidden);
  uint16_t* selected_bf16 =
      plain && rows > kMaxSmallDenseRows ? arena.alloc<uint16_t>(static_cast<size_t>(rows) * hidden) : nullptr;
  gather_rows(exec, normed, hidden, inputs.logit_row_ids, rows, selected, selected_bf16);
  linear(step, Act{selected, selected_bf16}, rows, lm_head_, logits);
}

}  // namespace moeserve::cuda
