// CPU reference: causal (optionally sliding-window, chunked or sparse) attention reading keys and values from the
// paged cache — one implementation, paged_attention (the step form: every row of a batch by its
// position), which GQA (attention) and MLA's absorbed form (mla_attention_absorbed) both call.
// One (row, head) pair per work item; softmax in float32 with the running max (and a per-head
// sink logit in the denominator when given). An e4m3 cache (cache_fp8) is read through
// kv_elements.h: a row's keys and values decoded exactly, once for several heads of a kv head,
// then the same float32 math.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/kv_elements.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void paged_attention(ExecContext& ctx, const AttentionArgs& args) {
  // Work items: (row, kv head, a run of `run` of the kv head's query heads). Over a float32 cache
  // run = 1: one (row, head) per item. Over e4m3 bytes the run's keys and values are decoded once
  // for all its heads; runs span the whole group unless that leaves fewer than 2 items per thread.
  const int kv_heads = args.num_heads / args.group;
  int run = 1;
  if (args.cache_fp8) {
    const size_t row_heads = static_cast<size_t>(args.tokens) * kv_heads;
    const size_t enough = 2 * ctx.pool->num_threads();
    run = args.group;
    while (run > 1 && row_heads * ((args.group + run - 1) / run) < enough) run = (run + 1) / 2;
  }
  const int runs = (args.group + run - 1) / run;  // per kv head
  const size_t items = static_cast<size_t>(args.tokens) * kv_heads * runs;
  // fp8: a value inside its key's elements (MLA: c inside [c | k_pe]) is read from the decoded key.
  const bool value_in_key = args.value_offset >= args.key_offset &&
                            args.value_offset + args.value_dim <= args.key_offset + args.key_dim;
  ctx.pool->parallel_for(items, run == 1 ? 4 : 1, [&](size_t begin, size_t end) {
    std::vector<float> scores;
    std::vector<float> keys, values;  // fp8: the item's keys decoded, [num_keys, key_dim] and [num_keys, value_dim]
    for (size_t item = begin; item < end; ++item) {
      const int64_t row = static_cast<int64_t>(item / (static_cast<size_t>(kv_heads) * runs));
      const int kv_head = static_cast<int>(item / runs % kv_heads);
      const int first_head = kv_head * args.group + static_cast<int>(item % runs) * run;
      const int last_head = std::min(first_head + run, (kv_head + 1) * args.group);
      const int kv_offset = kv_head * args.kv_head_stride;
      const int position = args.positions[row];
      const int32_t* block_table = args.block_tables + args.table_offsets[row];
      const auto slot = [&](int p) { return paged_slot(block_table, args.block_size, p); };
      int first_key = args.sliding_window > 0 ? std::max(0, position - args.sliding_window + 1) : 0;
      if (args.chunk_size > 0) first_key = std::max(first_key, position / args.chunk_size * args.chunk_size);
      float scale = args.scale;
      if (args.temperature_floor > 0.0f) {
        scale *= std::log1p(std::floor((static_cast<float>(position) + 1.0f) / args.temperature_floor)) *
                     args.temperature_scale +
                 1.0f;
      }
      // Key k of the row's keys: first_key + k, or (sparse) the k-th chosen position.
      const int32_t* chosen = args.key_positions != nullptr ? args.key_positions + row * args.keys_per_row : nullptr;
      int num_keys = position + 1 - first_key;
      if (chosen != nullptr) {
        num_keys = static_cast<int>(std::find(chosen, chosen + args.keys_per_row, -1) - chosen);
        first_key = 0;
      }
      const auto key_position = [&](int k) { return chosen != nullptr ? chosen[k] : first_key + k; };
      if (args.cache_fp8) {
        keys.resize(static_cast<size_t>(num_keys) * args.key_dim);
        values.resize(value_in_key ? 0 : static_cast<size_t>(num_keys) * args.value_dim);
        for (int k = 0; k < num_keys; ++k) {
          const int64_t s = slot(key_position(k));
          read_kv(args.cache, true, s, args.entry_size, args.key_offset + kv_offset, args.key_dim,
                  &keys[static_cast<size_t>(k) * args.key_dim]);
          if (!value_in_key) {
            read_kv(args.cache, true, s, args.entry_size, args.value_offset + kv_offset, args.value_dim,
                    &values[static_cast<size_t>(k) * args.value_dim]);
          }
        }
      }
      // Key k's key [key_dim] and value [value_dim] as float32: in the cache, or decoded above.
      const auto key_at = [&](int k) -> const float* {
        if (args.cache_fp8) return &keys[static_cast<size_t>(k) * args.key_dim];
        return args.cache + slot(key_position(k)) * args.entry_size + args.key_offset + kv_offset;
      };
      const auto value_at = [&](int k) -> const float* {
        if (args.cache_fp8 && value_in_key) {
          return &keys[static_cast<size_t>(k) * args.key_dim] + (args.value_offset - args.key_offset);
        }
        if (args.cache_fp8) return &values[static_cast<size_t>(k) * args.value_dim];
        return args.cache + slot(key_position(k)) * args.entry_size + args.value_offset + kv_offset;
      };
      for (int head = first_head; head < last_head; ++head) {
        const float* qv = args.q + row * args.q_stride + static_cast<int64_t>(head) * args.key_dim;
        scores.resize(num_keys);
        float max_score = -INFINITY;
        for (int k = 0; k < num_keys; ++k) {
          const float* key = key_at(k);
          float dot = 0.0f;
          for (int d = 0; d < args.key_dim; ++d) dot += qv[d] * key[d];
          scores[k] = dot * scale;
          max_score = std::max(max_score, scores[k]);
        }
        // A sink (GPT-OSS) is one more logit in the softmax, with no value.
        const float sink = args.sinks != nullptr ? args.sinks[head] : -INFINITY;
        max_score = std::max(max_score, sink);
        float denominator = args.sinks != nullptr ? std::exp(sink - max_score) : 0.0f;
        for (int k = 0; k < num_keys; ++k) {
          scores[k] = std::exp(scores[k] - max_score);
          denominator += scores[k];
        }
        float* dst = args.out + (row * args.num_heads + head) * static_cast<int64_t>(args.value_dim);
        std::fill(dst, dst + args.value_dim, 0.0f);
        for (int k = 0; k < num_keys; ++k) {
          const float* value = value_at(k);
          const float p = scores[k] / denominator * args.value_scale;
          for (int d = 0; d < args.value_dim; ++d) dst[d] += p * value[d];
        }
      }
    }
  });
}

namespace {

// Each row's position and where its sequence's block table starts in the packed tables.
struct RowsBySequence {
  std::vector<int32_t> positions;
  std::vector<int32_t> table_offsets;
  std::vector<int32_t> block_tables;
};

RowsBySequence rows_by_sequence(std::span<const SequenceView> sequences, int64_t rows) {
  RowsBySequence out;
  out.positions.assign(rows, 0);
  out.table_offsets.assign(rows, 0);
  for (const SequenceView& seq : sequences) {
    const int32_t offset = static_cast<int32_t>(out.block_tables.size());
    out.block_tables.insert(out.block_tables.end(), seq.block_table.begin(), seq.block_table.end());
    for (int i = 0; i < seq.num_query; ++i) {
      out.positions[seq.query_begin + i] = seq.context_len - seq.num_query + i;
      out.table_offsets[seq.query_begin + i] = offset;
    }
  }
  return out;
}

}  // namespace

void attention(ExecContext& ctx, const TensorView& q, const PagedKvLayer& kv, std::span<const SequenceView> sequences,
               const AttentionParams& params, const TensorView& out) {
  const RowsBySequence rows = rows_by_sequence(sequences, q.dim(0));
  paged_attention(ctx, AttentionArgs{.q = q.as<float>(),
                                     .q_stride = static_cast<int64_t>(params.num_heads) * params.head_dim,
                                     .tokens = static_cast<int>(q.dim(0)),
                                     .num_heads = params.num_heads,
                                     .group = params.num_heads / params.num_kv_heads,
                                     .cache = kv.data,
                                     .block_size = kv.block_size,
                                     .entry_size = kv.entry_size,
                                     .key_offset = 0,
                                     .value_offset = params.num_kv_heads * params.head_dim,
                                     .kv_head_stride = params.head_dim,
                                     .key_dim = params.head_dim,
                                     .value_dim = params.head_dim,
                                     .scale = params.scale,
                                     .sliding_window = params.sliding_window,
                                     .block_tables = rows.block_tables.data(),
                                     .table_offsets = rows.table_offsets.data(),
                                     .positions = rows.positions.data(),
                                     .out = out.as<float>()});
}

void mla_attention_absorbed(ExecContext& ctx, const TensorView& q_absorbed, const PagedKvLayer& kv,
                            std::span<const SequenceView> sequences, int num_heads, float scale,
                            const TensorView& out_latent) {
  MS_CHECK(q_absorbed.dim(2) == kv.entry_size);  // latent + rope key
  const RowsBySequence rows = rows_by_sequence(sequences, q_absorbed.dim(0));
  paged_attention(ctx, AttentionArgs{.q = q_absorbed.as<float>(),
                                     .q_stride = static_cast<int64_t>(num_heads) * kv.entry_size,
                                     .tokens = static_cast<int>(q_absorbed.dim(0)),
                                     .num_heads = num_heads,
                                     .group = num_heads,
                                     .cache = kv.data,
                                     .block_size = kv.block_size,
                                     .entry_size = kv.entry_size,
                                     .key_offset = 0,
                                     .value_offset = 0,
                                     .kv_head_stride = 0,
                                     .key_dim = kv.entry_size,
                                     .value_dim = static_cast<int>(out_latent.dim(2)),
                                     .scale = scale,
                                     .sliding_window = 0,
                                     .block_tables = rows.block_tables.data(),
                                     .table_offsets = rows.table_offsets.data(),
                                     .positions = rows.positions.data(),
                                     .out = out_latent.as<float>()});
}

}  // namespace moeserve::ops
