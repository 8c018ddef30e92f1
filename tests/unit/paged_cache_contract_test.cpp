// The CPU step ops that write and read the paged KV cache (kernels/ops.h, level 2) against the
// plain math they specify: rope's fused cache write, paged attention of rows of several sequences
// by position (windows, chunks, temperature, sinks, sparse keys), DeepSeek-V3.2's indexer, MLA's
// absorbed and plain forms, and e4m3 caches with and without KV cache scales. As in
// ops_contract_test.cpp, these CPU ops are the reference tests/gpu holds each CUDA op to.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "base/dtype.h"
#include "kernels/ops.h"
#include "ops_contract_support.h"

namespace moeserve {
namespace {

using testing::OpsContractTest;

// GQA's fused qkv rows [kTokens, kRow]: 4 q heads, 2 k heads, 2 v heads of 8; rope on q and k, and
// each token's entry [k | v] written to its slot of a paged cache [kBlocks · kBlockSize, kEntry]
// (float32, or e4m3 bytes with fp8). Returns the rows as rope rotates them one token at a time
// (the reference), after rotating `qkv` in place through the fused op.
struct RopeWrite {
  static constexpr int kTokens = 6, kHq = 4, kHkv = 2, kD = 8, kRow = (kHq + 2 * kHkv) * kD, kBlockSize = 4,
                       kBlocks = 5, kEntry = 2 * kHkv * kD;
  std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  std::vector<int32_t> positions = {3, 4, 5, 0, 1, 9};
  std::vector<int32_t> slots = {7, 8, 9, 12, 13, 2};

  std::vector<float> run(ExecContext& ctx, std::vector<float>& qkv, void* cache, bool fp8) const {
    std::vector<float> expected = qkv;  // dense [T, hq + hkv, d] rotated per token
    for (int t = 0; t < kTokens; ++t) {
      ops::rope(ctx, TensorView{expected.data() + t * kRow, DType::kF32, Shape{1, kHq + kHkv, kD}},
                std::span<const int32_t>(&positions[t], 1),
                ops::RopeParams{.inv_freq = inv_freq, .attention_factor = 1.5f, .interleaved = true});
    }
    ops::rope(ctx, ops::RopeArgs{.x = qkv.data(),
                                 .tokens = kTokens,
                                 .heads = kHq + kHkv,
                                 .head_stride = kD,
                                 .token_stride = kRow,
                                 .inv_freq = inv_freq.data(),
                                 .half = 4,
                                 .attention_factor = 1.5f,
                                 .interleaved = true,
                                 .positions = positions.data(),
                                 .cache = static_cast<float*>(cache),
                                 .entry_size = kEntry,
                                 .entry_offset = kHq * kD,
                                 .slots = slots.data(),
                                 .cache_fp8 = fp8});
    return expected;
  }
};

TEST_F(OpsContractTest, RopeRotatesStridedHeadsThenWritesTheirEntries) {
  using R = RopeWrite;
  const RopeWrite rope;
  std::vector<float> qkv = random_floats(R::kTokens * R::kRow);
  std::vector<float> cache(R::kBlocks * R::kBlockSize * R::kEntry, -1.0f);
  const std::vector<float> expected = rope.run(ctx_, qkv, cache.data(), false);
  EXPECT_EQ(qkv, expected);
  for (int t = 0; t < R::kTokens; ++t) {
    for (int i = 0; i < R::kEntry; ++i) {
      EXPECT_EQ(cache[rope.slots[t] * R::kEntry + i], expected[t * R::kRow + R::kHq * R::kD + i]);
    }
  }
}

// A paged cache of random entries with two sequences' block tables, and a batch that mixes a
// prefill chunk of one with a decode row of the other.
struct PagedBatch {
  int block_size = 4;
  int entry = 0;
  std::vector<float> cache;
  std::vector<int32_t> block_tables;   // sequence 0's 4 blocks, then sequence 1's 3
  std::vector<int32_t> table_offsets;  // per row
  std::vector<int32_t> positions;      // per row
  std::vector<int> sequence_of_row;
  std::vector<int> context = {13, 10};  // each sequence's context length
};

PagedBatch make_batch(int entry, std::vector<float> cache) {
  PagedBatch b;
  b.entry = entry;
  b.cache = std::move(cache);
  b.block_tables = {5, 1, 7, 3, 0, 6, 2};
  // Rows: sequence 0 positions 9..12 (a chunk), sequence 1 position 9 (decode), in that order.
  for (int p = 9; p <= 12; ++p) {
    b.positions.push_back(p);
    b.table_offsets.push_back(0);
    b.sequence_of_row.push_back(0);
  }
  b.positions.push_back(9);
  b.table_offsets.push_back(4);
  b.sequence_of_row.push_back(1);
  return b;
}

// Sequence s's entries 0..context-1, dense [context, entry].
std::vector<float> gather(ExecContext& ctx, PagedBatch& b, int s) {
  std::vector<float> out(size_t(b.context[s]) * b.entry);
  const PagedKvLayer kv{.data = b.cache.data(), .num_blocks = 8, .block_size = b.block_size, .entry_size = b.entry};
  const std::span<const int32_t> table(b.block_tables.data() + (s == 0 ? 0 : 4), s == 0 ? 4 : 3);
  ops::kv_gather(ctx, kv, table, b.context[s], TensorView{out.data(), DType::kF32, Shape{b.context[s], b.entry}});
  return out;
}

// The paged-attention tests' GQA attention: `rows` rows of make_batch's over entries [K (hkv heads
// × d) | V (hkv heads × d)], score scale 0.3; callers add windows, sinks, sparse keys or KV scales.
ops::AttentionArgs gqa_args(const PagedBatch& b, const std::vector<float>& q, int rows, int hq, int hkv, int d,
                            const float* cache, bool fp8, float* out) {
  return ops::AttentionArgs{.q = q.data(),
                            .q_stride = hq * d,
                            .tokens = rows,
                            .num_heads = hq,
                            .group = hq / hkv,
                            .cache = cache,
                            .cache_fp8 = fp8,
                            .block_size = b.block_size,
                            .entry_size = 2 * hkv * d,
                            .key_offset = 0,
                            .value_offset = hkv * d,
                            .kv_head_stride = d,
                            .key_dim = d,
                            .value_dim = d,
                            .scale = 0.3f,
                            .block_tables = b.block_tables.data(),
                            .table_offsets = b.table_offsets.data(),
                            .positions = b.positions.data(),
                            .out = out};
}

// MLA's absorbed attention of the first `tokens` rows of make_batch's over [c | k_pe (| ...)]
// entries of `entry` elements: out [tokens, heads, rank], score scale 0.25.
ops::AttentionArgs mla_absorbed_args(const PagedBatch& b, const ops::MlaDims& dims,
                                     const std::vector<float>& q_absorbed, int tokens, int entry, const float* cache,
                                     bool fp8, float* out) {
  const int latent_key = dims.rank + dims.rope;
  return ops::AttentionArgs{.q = q_absorbed.data(),
                            .q_stride = dims.heads * latent_key,
                            .tokens = tokens,
                            .num_heads = dims.heads,
                            .group = dims.heads,
                            .cache = cache,
                            .cache_fp8 = fp8,
                            .block_size = b.block_size,
                            .entry_size = entry,
                            .key_dim = latent_key,
                            .value_dim = dims.rank,
                            .scale = 0.25f,
                            .block_tables = b.block_tables.data(),
                            .table_offsets = b.table_offsets.data(),
                            .positions = b.positions.data(),
                            .out = out};
}

// MLA's plain-form prefill of make_batch's rows (sequence 0's chunk of 4, then sequence 1's row)
// into out [rows, heads, value], score scale 0.25.
void mla_plain_prefill(ExecContext& ctx, const PagedBatch& b, const ops::MlaDims& dims, const std::vector<float>& q,
                       const std::vector<float>& kv_b, int entry, const float* cache, bool fp8, float cache_scale,
                       float* out) {
  for (auto [first_row, count, begin, table] : {std::tuple{0, 4, 9, 0}, {4, 1, 9, 4}}) {
    ops::mla_prefill_attention(ctx, ops::MlaPrefillArgs{.dims = dims,
                                                        .q = q.data(),
                                                        .first_row = first_row,
                                                        .count = count,
                                                        .begin = begin,
                                                        .cache = cache,
                                                        .cache_fp8 = fp8,
                                                        .cache_scale = cache_scale,
                                                        .entry_size = entry,
                                                        .block_size = b.block_size,
                                                        .block_table = b.block_tables.data() + table,
                                                        .kv_b = kv_b.data(),
                                                        .scale = 0.25f,
                                                        .out = out});
  }
}

TEST_F(OpsContractTest, PagedAttentionByPositionMatchesDenseCausalAttention) {
  const int hq = 4, hkv = 2, d = 8, entry = 2 * hkv * d, rows = 5;
  PagedBatch b = make_batch(entry, random_floats(8 * 4 * entry));
  std::vector<float> q = random_floats(rows * hq * d);
  std::vector<float> out(rows * hq * d, NAN);
  // Full, sliding window 3, chunks of 5 (rows at 9 and 10..12 fall in different chunks), and
  // Llama 4's temperature tuning (floor 4, scale 0.5) on top of chunks.
  struct Case {
    int window, chunk;
    float floor;
  };
  for (const Case& c : {Case{0, 0, 0.0f}, Case{3, 0, 0.0f}, Case{0, 5, 0.0f}, Case{0, 5, 4.0f}, Case{0, 0, 4.0f}}) {
    const int window = c.window;
    ops::AttentionArgs args = gqa_args(b, q, rows, hq, hkv, d, b.cache.data(), false, out.data());
    args.sliding_window = window;
    args.chunk_size = c.chunk;
    args.temperature_floor = c.floor;
    args.temperature_scale = 0.5f;
    ops::paged_attention(ctx_, args);
    for (int r = 0; r < rows; ++r) {
      // The row's keys (window-limited) as a dense causal problem: the query is the last row.
      const std::vector<float> entries = gather(ctx_, b, b.sequence_of_row[r]);
      const int p = b.positions[r];
      const int first = window > 0 ? std::max(0, p - window + 1) : c.chunk > 0 ? p / c.chunk * c.chunk : 0;
      // transformers scales q by log(floor((p + 1) / floor) + 1) * scale + 1
      const float temperature = c.floor > 0.0f ? std::log(std::floor((p + 1) / c.floor) + 1.0f) * 0.5f + 1.0f : 1.0f;
      const int keys = p + 1 - first;
      std::vector<float> k(size_t(keys) * hq * d), v(size_t(keys) * hq * d);
      for (int j = 0; j < keys; ++j) {
        for (int h = 0; h < hq; ++h) {
          const float* e = &entries[size_t(first + j) * entry];
          std::copy(e + (h / 2) * d, e + (h / 2 + 1) * d, &k[(size_t(j) * hq + h) * d]);
          std::copy(e + hkv * d + (h / 2) * d, e + hkv * d + (h / 2 + 1) * d, &v[(size_t(j) * hq + h) * d]);
        }
      }
      std::vector<float> q_row(q.begin() + r * hq * d, q.begin() + (r + 1) * hq * d), expected(hq * d);
      ops::attention_dense(ctx_, f32(q_row, Shape{1, hq, d}), f32(k, Shape{keys, hq, d}), f32(v, Shape{keys, hq, d}),
                           0.3f * temperature, f32(expected, Shape{1, hq, d}));
      const std::vector<float> got(out.begin() + r * hq * d, out.begin() + (r + 1) * hq * d);
      EXPECT_LT(max_abs_diff(got, expected), 1e-6)
          << "row " << r << " window " << window << " chunk " << c.chunk << " floor " << c.floor;
    }
  }
}

TEST_F(OpsContractTest, PagedAttentionSinksTakeProbabilityMassWithoutValue) {
  // GPT-OSS's sinks: head h's softmax over its window's scores and one more logit sinks[h], whose
  // probability is dropped. Reference: the plain sums over each row's keys, in double.
  const int hq = 4, hkv = 2, d = 8, entry = 2 * hkv * d, rows = 5;
  const float scale = 0.3f;
  PagedBatch b = make_batch(entry, random_floats(8 * 4 * entry));
  std::vector<float> q = random_floats(rows * hq * d);
  const std::vector<float> sinks = {-1.0f, 0.5f, 2.0f, 8.0f};  // the last outweighs every key
  std::vector<float> out(rows * hq * d, NAN);
  for (int window : {0, 3}) {
    ops::AttentionArgs args = gqa_args(b, q, rows, hq, hkv, d, b.cache.data(), false, out.data());
    args.scale = scale;
    args.sliding_window = window;
    args.sinks = sinks.data();
    ops::paged_attention(ctx_, args);
    for (int r = 0; r < rows; ++r) {
      const std::vector<float> entries = gather(ctx_, b, b.sequence_of_row[r]);
      const int p = b.positions[r];
      const int first = window > 0 ? std::max(0, p - window + 1) : 0;
      for (int h = 0; h < hq; ++h) {
        const float* qh = &q[(size_t(r) * hq + h) * d];
        std::vector<double> weights;
        double denominator = std::exp(double(sinks[h]));
        for (int key = first; key <= p; ++key) {
          const float* k = &entries[size_t(key) * entry + (h / 2) * d];
          double dot = 0.0;
          for (int i = 0; i < d; ++i) dot += double(qh[i]) * k[i];
          weights.push_back(std::exp(dot * scale));
          denominator += weights.back();
        }
        for (int i = 0; i < d; ++i) {
          double expected = 0.0;
          for (int key = first; key <= p; ++key) {
            expected += weights[key - first] / denominator * entries[size_t(key) * entry + hkv * d + (h / 2) * d + i];
          }
          EXPECT_NEAR(out[(size_t(r) * hq + h) * d + i], expected, 1e-6)
              << "row " << r << " head " << h << " window " << window;
        }
      }
    }
  }
}

TEST_F(OpsContractTest, IndexerKeepsTheTopkScoredKeysInOrder) {
  // DeepSeek-V3.2's indexer on index keys inside wider cache entries ([3 pad | key 8 | 2 pad]) and
  // strided queries and head weights. Reference: every key's score in double, sorted.
  const int heads = 3, dim = 8, entry = 13, key_offset = 3, rows = 5;
  const int q_stride = heads * dim + 5, w_stride = heads + 2;
  PagedBatch b = make_batch(entry, random_floats(8 * 4 * entry));
  const std::vector<float> q = random_floats(rows * q_stride);
  const std::vector<float> w = random_floats(rows * w_stride);
  const float scale = 0.35f, weight_scale = 0.6f;
  // topk 4: every row selects; 12: the rows at position 9 (10 keys) keep all, the one at 12 drops one.
  for (int topk : {4, 12}) {
    std::vector<int32_t> out(size_t(rows) * topk, 99);
    ops::indexer_topk(ctx_, ops::IndexerArgs{.q = q.data(),
                                             .q_stride = q_stride,
                                             .weights = w.data(),
                                             .weights_stride = w_stride,
                                             .tokens = rows,
                                             .heads = heads,
                                             .head_dim = dim,
                                             .scale = scale,
                                             .weight_scale = weight_scale,
                                             .topk = topk,
                                             .cache = b.cache.data(),
                                             .block_size = b.block_size,
                                             .entry_size = entry,
                                             .key_offset = key_offset,
                                             .block_tables = b.block_tables.data(),
                                             .table_offsets = b.table_offsets.data(),
                                             .positions = b.positions.data(),
                                             .out = out.data()});
    for (int r = 0; r < rows; ++r) {
      const std::vector<float> entries = gather(ctx_, b, b.sequence_of_row[r]);
      const int p = b.positions[r];
      std::vector<std::pair<double, int32_t>> scored;
      for (int j = 0; j <= p; ++j) {
        double score = 0.0;
        for (int h = 0; h < heads; ++h) {
          double dot = 0.0;
          const float* qh = &q[size_t(r) * q_stride + h * dim];
          for (int i = 0; i < dim; ++i) dot += double(qh[i]) * entries[size_t(j) * entry + key_offset + i];
          score += double(w[size_t(r) * w_stride + h]) * weight_scale * std::max(0.0, dot * scale);
        }
        scored.emplace_back(score, j);
      }
      std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      std::vector<int32_t> expected;
      for (int i = 0; i < std::min(topk, p + 1); ++i) expected.push_back(scored[size_t(i)].second);
      std::sort(expected.begin(), expected.end());
      expected.resize(size_t(topk), -1);
      EXPECT_EQ(std::vector<int32_t>(out.begin() + r * topk, out.begin() + (r + 1) * topk), expected)
          << "row " << r << " topk " << topk;
    }
  }
}

TEST_F(OpsContractTest, SparsePagedAttentionReadsOnlyTheChosenKeys) {
  // MLA's absorbed form (one KV head: key = the entry's first key_dim floats, value its first
  // value_dim) over each row's chosen positions, -1 ending a short list. Reference: plain sums in double.
  const int heads = 2, key_dim = 6, value_dim = 4, entry = 9, rows = 5, per_row = 4;
  const float scale = 0.4f;
  PagedBatch b = make_batch(entry, random_floats(8 * 4 * entry));
  const std::vector<float> q = random_floats(rows * heads * key_dim);
  const std::vector<int32_t> chosen = {0, 3, 8, 9, 2, 5, 9, 10, 1, 11, -1, -1, 12, -1, -1, -1, 4, 6, 7, 9};
  std::vector<float> out(rows * heads * value_dim, NAN);
  ops::paged_attention(ctx_, ops::AttentionArgs{.q = q.data(),
                                                .q_stride = heads * key_dim,
                                                .tokens = rows,
                                                .num_heads = heads,
                                                .group = heads,
                                                .cache = b.cache.data(),
                                                .block_size = b.block_size,
                                                .entry_size = entry,
                                                .key_dim = key_dim,
                                                .value_dim = value_dim,
                                                .scale = scale,
                                                .block_tables = b.block_tables.data(),
                                                .table_offsets = b.table_offsets.data(),
                                                .positions = b.positions.data(),
                                                .out = out.data(),
                                                .key_positions = chosen.data(),
                                                .keys_per_row = per_row});
  for (int r = 0; r < rows; ++r) {
    const std::vector<float> entries = gather(ctx_, b, b.sequence_of_row[r]);
    for (int h = 0; h < heads; ++h) {
      std::vector<std::pair<double, int>> weights;  // (unnormalised probability, key)
      double denominator = 0.0;
      for (int i = 0; i < per_row && chosen[size_t(r) * per_row + i] >= 0; ++i) {
        const int key = chosen[size_t(r) * per_row + i];
        double dot = 0.0;
        const float* qh = &q[(size_t(r) * heads + h) * key_dim];
        for (int d = 0; d < key_dim; ++d) dot += double(qh[d]) * entries[size_t(key) * entry + d];
        weights.emplace_back(std::exp(dot * scale), key);
        denominator += weights.back().first;
      }
      for (int d = 0; d < value_dim; ++d) {
        double expected = 0.0;
        for (const auto& [weight, key] : weights) expected += weight / denominator * entries[size_t(key) * entry + d];
        EXPECT_NEAR(out[(size_t(r) * heads + h) * value_dim + d], expected, 1e-6) << "row " << r << " head " << h;
      }
    }
  }
}

TEST_F(OpsContractTest, MlaAbsorbedAndPlainFormsAgree) {
  // The absorbed form (q·W_UK, paged attention over the latent, ·W_UV) against the plain
  // prefill form (keys and values expanded from the latent), on the same piece.
  const ops::MlaDims dims{.tokens = 5, .heads = 3, .nope = 8, .rope = 4, .value = 6, .rank = 10};
  const int entry = dims.rank + dims.rope, qk = dims.nope + dims.rope;
  PagedBatch b = make_batch(entry, random_floats(8 * 4 * entry));
  std::vector<float> kv_b = random_floats(size_t(dims.heads) * (dims.nope + dims.value) * dims.rank, 0.3f);
  std::vector<float> q = random_floats(size_t(dims.tokens) * dims.heads * qk);

  // (both forms at the helpers' score scale, 0.25)
  std::vector<float> q_absorbed(size_t(dims.tokens) * dims.heads * entry);
  ops::mla_absorb_q(ctx_, dims, q.data(), kv_b.data(), q_absorbed.data());
  std::vector<float> latent(size_t(dims.tokens) * dims.heads * dims.rank);
  ops::paged_attention(ctx_, mla_absorbed_args(b, dims, q_absorbed, dims.tokens, entry, b.cache.data(), false,
                                               latent.data()));
  std::vector<float> absorbed(size_t(dims.tokens) * dims.heads * dims.value);
  ops::mla_project_v(ctx_, dims, latent.data(), kv_b.data(), absorbed.data());

  // Plain form, piece by piece: sequence 0's rows 0..3 (positions 9..12), sequence 1's row 4.
  std::vector<float> plain(absorbed.size(), NAN);
  mla_plain_prefill(ctx_, b, dims, q, kv_b, entry, b.cache.data(), false, 1.0f, plain.data());
  EXPECT_LT(max_abs_diff(absorbed, plain), 1e-5);
}

// --kv-cache-dtype fp8 (RopeArgs::cache_fp8): the fused cache write stores each entry value as its
// e4m3 byte — f32_to_f8e4m3: nearest, ties to even, saturating at ±448 — and touches no other slot.
TEST_F(OpsContractTest, RopeWritesE4m3BytesOfTheEntries) {
  using R = RopeWrite;
  const RopeWrite rope;
  std::vector<float> qkv = random_floats(R::kTokens * R::kRow, 4.0f);
  // Token 0's first v head (written unrotated) pins the rounding: saturation, ties to even in the
  // normal and the subnormal range, the sign of zero.
  const float planted[R::kD] = {1000.0f, -1000.0f, 1.0625f, 1.1875f, 3.0f / 1024, -0.0f, 448.0f, 464.0f};
  const uint8_t planted_codes[R::kD] = {0x7e, 0xfe, 0x38, 0x3a, 0x02, 0x80, 0x7e, 0x7e};
  std::copy(planted, planted + R::kD, qkv.begin() + (R::kHq + R::kHkv) * R::kD);
  constexpr uint8_t kPoison = 0x55;
  std::vector<uint8_t> cache(R::kBlocks * R::kBlockSize * R::kEntry, kPoison);
  const std::vector<float> expected = rope.run(ctx_, qkv, cache.data(), true);
  EXPECT_EQ(qkv, expected);  // the rows themselves stay float32, unrounded
  std::vector<uint8_t> want(cache.size(), kPoison);
  for (int t = 0; t < R::kTokens; ++t) {
    for (int i = 0; i < R::kEntry; ++i) {
      want[rope.slots[t] * R::kEntry + i] = f32_to_f8e4m3(expected[t * R::kRow + R::kHq * R::kD + i]);
    }
  }
  EXPECT_EQ(cache, want);
  for (int i = 0; i < R::kD; ++i) {
    EXPECT_EQ(cache[rope.slots[0] * R::kEntry + R::kHkv * R::kD + i], planted_codes[i]) << planted[i];
  }
}

// The same paged cache as e4m3 bytes and as the float32 values they decode to: random codes
// (no NaN), [count].
struct Fp8PagedCache {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  const float* cache(bool fp8) const { return fp8 ? reinterpret_cast<const float*>(bytes.data()) : values.data(); }
};

// The bits of each float, so that equality is bit for bit (-0 differs from 0).
std::vector<uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

// Every CPU op that reads the paged cache, over e4m3 bytes (cache_fp8), computes bit for bit what it
// computes over a float32 cache holding the decoded values: GQA paged attention (full, sliding
// window, chunks with temperature, sinks, sparse keys), MLA's absorbed form and plain prefill (over
// [c | k_pe | index key] entries), and DeepSeek-V3.2's indexer.
TEST_F(OpsContractTest, CacheReadersOverE4m3BytesEqualTheDecodedFloats) {
  const auto fp8_cache = [&](size_t count) {
    Fp8PagedCache c;
    const std::vector<float> v = random_floats(count, 3.0f);
    for (float x : v) {
      c.bytes.push_back(f32_to_f8e4m3(x));
      c.values.push_back(f8e4m3_to_f32(c.bytes.back()));
    }
    return c;
  };
  {  // GQA: entries [K (2 heads × 8) | V (2 heads × 8)]
    const int hq = 4, hkv = 2, d = 8, entry = 2 * hkv * d, rows = 5;
    const Fp8PagedCache c = fp8_cache(8 * 4 * entry);
    PagedBatch b = make_batch(entry, c.values);
    const std::vector<float> q = random_floats(rows * hq * d);
    const std::vector<float> sinks = {-1.0f, 0.5f, 2.0f, 0.0f};
    const std::vector<int32_t> chosen = {0, 3, 8, 9, 2, 5, 9, 10, 1, 11, -1, -1, 12, -1, -1, -1, 4, 6, 7, 9};
    struct Case {
      int window, chunk;
      float floor;
      bool sinks, sparse;
    };
    for (const Case& k :
         {Case{0, 0, 0.0f, false, false}, Case{3, 0, 0.0f, false, false}, Case{0, 5, 4.0f, false, false},
          Case{3, 0, 0.0f, true, false}, Case{0, 0, 0.0f, false, true}}) {
      std::vector<float> out[2];
      for (bool fp8 : {false, true}) {
        out[fp8].assign(size_t(rows) * hq * d, NAN);
        ops::AttentionArgs args = gqa_args(b, q, rows, hq, hkv, d, c.cache(fp8), fp8, out[fp8].data());
        args.sliding_window = k.window;
        args.chunk_size = k.chunk;
        args.temperature_floor = k.floor;
        args.temperature_scale = 0.5f;
        args.sinks = k.sinks ? sinks.data() : nullptr;
        args.key_positions = k.sparse ? chosen.data() : nullptr;
        args.keys_per_row = k.sparse ? 4 : 0;
        ops::paged_attention(ctx_, args);
      }
      EXPECT_EQ(bits_of(out[true]), bits_of(out[false]))
          << "window " << k.window << " chunk " << k.chunk << " sinks " << k.sinks << " sparse " << k.sparse;
      EXPECT_FALSE(std::isnan(out[true][0]));
    }
  }
  {  // MLA: entries [c (10) | k_pe (4) | index key (8)], the V3.2 layout
    const ops::MlaDims dims{.tokens = 5, .heads = 3, .nope = 8, .rope = 4, .value = 6, .rank = 10};
    const int latent_key = dims.rank + dims.rope, index_dim = 8, entry = latent_key + index_dim;
    const int qk = dims.nope + dims.rope;
    const Fp8PagedCache c = fp8_cache(8 * 4 * entry);
    PagedBatch b = make_batch(entry, c.values);
    const std::vector<float> kv_b = random_floats(size_t(dims.heads) * (dims.nope + dims.value) * dims.rank, 0.3f);
    const std::vector<float> q = random_floats(size_t(dims.tokens) * dims.heads * qk);
    std::vector<float> q_absorbed(size_t(dims.tokens) * dims.heads * latent_key);
    ops::mla_absorb_q(ctx_, dims, q.data(), kv_b.data(), q_absorbed.data());
    // MLA's absorbed attention of the first `tokens` rows over the cache read as bytes or floats:
    // out [tokens, heads, rank].
    const auto absorbed = [&](int tokens, bool fp8) {
      std::vector<float> out(size_t(tokens) * dims.heads * dims.rank, NAN);
      ops::paged_attention(ctx_, mla_absorbed_args(b, dims, q_absorbed, tokens, entry, c.cache(fp8), fp8, out.data()));
      return out;
    };
    std::vector<float> latent[2], plain[2];
    for (bool fp8 : {false, true}) {
      latent[fp8] = absorbed(dims.tokens, fp8);
      plain[fp8].assign(size_t(dims.tokens) * dims.heads * dims.value, NAN);
      mla_plain_prefill(ctx_, b, dims, q, kv_b, entry, c.cache(fp8), fp8, 1.0f, plain[fp8].data());
    }
    EXPECT_EQ(bits_of(latent[true]), bits_of(latent[false])) << "absorbed";
    // Two rows on 2 threads: the bytes' work items then take runs of 2 and 1 of the 3 heads (fewer
    // items than 2 per thread otherwise), still giving each row the float32 cache's values.
    const std::vector<float> two_rows = absorbed(2, true);
    EXPECT_EQ(bits_of(two_rows),
              bits_of(std::vector<float>(latent[false].begin(), latent[false].begin() + two_rows.size())))
        << "absorbed, two rows";
    EXPECT_EQ(bits_of(plain[true]), bits_of(plain[false])) << "plain prefill";
    EXPECT_FALSE(std::isnan(latent[true][0]) || std::isnan(plain[true][0]));

    const int heads = 2, rows = 5, topk = 4;
    const std::vector<float> q_index = random_floats(size_t(rows) * heads * index_dim);
    const std::vector<float> w = random_floats(size_t(rows) * heads);
    std::vector<int32_t> chosen[2];
    for (bool fp8 : {false, true}) {
      chosen[fp8].assign(size_t(rows) * topk, 99);
      ops::indexer_topk(ctx_, ops::IndexerArgs{.q = q_index.data(),
                                               .q_stride = heads * index_dim,
                                               .weights = w.data(),
                                               .weights_stride = heads,
                                               .tokens = rows,
                                               .heads = heads,
                                               .head_dim = index_dim,
                                               .scale = 0.35f,
                                               .weight_scale = 0.7f,
                                               .topk = topk,
                                               .cache = c.cache(fp8),
                                               .cache_fp8 = fp8,
                                               .block_size = b.block_size,
                                               .entry_size = entry,
                                               .key_offset = latent_key,
                                               .block_tables = b.block_tables.data(),
                                               .table_offsets = b.table_offsets.data(),
                                               .positions = b.positions.data(),
                                               .out = chosen[fp8].data()});
    }
    EXPECT_EQ(chosen[true], chosen[false]) << "indexer";
  }
}

// A checkpoint's KV cache scales (ops::KvScales) under an e4m3 cache: the write stores each value
// divided by its scale (the K part by k, from cache_value_begin on by v), and the readers given
// the scales back (GQA: scale × k and value_scale v; MLA: k for the whole latent) compute what they
// compute over a float32 cache holding the decoded values times their scales.
TEST_F(OpsContractTest, ScaledE4m3CachesReadAsTheirValuesTimesTheScales) {
  const ops::KvScales scales{.k = 0.37f, .v = 2.6f};
  {  // the write
    const int entry = 12, value_begin = 8, tokens = 3;
    const std::vector<float> src = random_floats(size_t(tokens) * entry, 4.0f);
    const std::vector<int32_t> slots = {4, 0, 2};
    std::vector<uint8_t> cache(size_t(5) * entry, 0x55);
    ops::kv_write(ctx_, reinterpret_cast<float*>(cache.data()), entry, slots.data(), tokens, src.data(), entry, true,
                  scales, value_begin);
    for (int t = 0; t < tokens; ++t) {
      for (int i = 0; i < entry; ++i) {
        const float scale = i < value_begin ? scales.k : scales.v;
        ASSERT_EQ(cache[slots[t] * entry + i], f32_to_f8e4m3(src[t * entry + i] / scale)) << t << ", " << i;
      }
    }
  }
  // A random e4m3 cache, and the float32 cache of its decoded values times each element's scale.
  const auto caches = [&](int count, int entry, int value_begin) {
    std::pair<std::vector<uint8_t>, std::vector<float>> c;
    for (float x : random_floats(count, 3.0f)) {
      c.first.push_back(f32_to_f8e4m3(x));
      const int i = static_cast<int>(c.second.size()) % entry;
      c.second.push_back(f8e4m3_to_f32(c.first.back()) * (i < value_begin ? scales.k : scales.v));
    }
    return c;
  };
  {  // GQA: entries [K (2 heads × 8) | V (2 heads × 8)]
    const int hq = 4, hkv = 2, d = 8, entry = 2 * hkv * d, rows = 5;
    const auto [bytes, values] = caches(8 * 4 * entry, entry, hkv * d);
    const PagedBatch b = make_batch(entry, values);
    const std::vector<float> q = random_floats(rows * hq * d);
    std::vector<float> out[2];
    for (bool fp8 : {false, true}) {
      out[fp8].assign(size_t(rows) * hq * d, NAN);
      ops::AttentionArgs args = gqa_args(b, q, rows, hq, hkv, d,
                                         fp8 ? reinterpret_cast<const float*>(bytes.data()) : values.data(), fp8,
                                         out[fp8].data());
      if (fp8) {
        args.scale *= scales.k;
        args.value_scale = scales.v;
      }
      ops::paged_attention(ctx_, args);
    }
    EXPECT_LT(max_abs_diff(out[true], out[false]), 1e-5 * scales.v) << "GQA";
  }
  {  // MLA: entries [c (10) | k_pe (4)], every element scaled by k
    const ops::MlaDims dims{.tokens = 5, .heads = 3, .nope = 8, .rope = 4, .value = 6, .rank = 10};
    const int entry = dims.rank + dims.rope;
    const auto [bytes, values] = caches(8 * 4 * entry, entry, entry);
    const PagedBatch b = make_batch(entry, values);
    const std::vector<float> kv_b = random_floats(size_t(dims.heads) * (dims.nope + dims.value) * dims.rank, 0.3f);
    const std::vector<float> q = random_floats(size_t(dims.tokens) * dims.heads * (dims.nope + dims.rope));
    std::vector<float> q_absorbed(size_t(dims.tokens) * dims.heads * entry);
    ops::mla_absorb_q(ctx_, dims, q.data(), kv_b.data(), q_absorbed.data());
    std::vector<float> latent[2], plain[2];
    for (bool fp8 : {false, true}) {
      const float* cache = fp8 ? reinterpret_cast<const float*>(bytes.data()) : values.data();
      latent[fp8].assign(size_t(dims.tokens) * dims.heads * dims.rank, NAN);
      ops::AttentionArgs args =
          mla_absorbed_args(b, dims, q_absorbed, dims.tokens, entry, cache, fp8, latent[fp8].data());
      if (fp8) {
        args.scale *= scales.k;
        args.value_scale = scales.k;
      }
      ops::paged_attention(ctx_, args);
      plain[fp8].assign(size_t(dims.tokens) * dims.heads * dims.value, NAN);
      mla_plain_prefill(ctx_, b, dims, q, kv_b, entry, cache, fp8, fp8 ? scales.k : 1.0f, plain[fp8].data());
    }
    EXPECT_LT(max_abs_diff(latent[true], latent[false]), 1e-5) << "absorbed";
    // The plain form multiplies the decoded latents by the scale as it gathers them: bit for bit.
    EXPECT_EQ(bits_of(plain[true]), bits_of(plain[false])) << "plain prefill";
    EXPECT_FALSE(std::isnan(latent[true][0]) || std::isnan(plain[true][0]));
  }
}

}  // namespace
}  // namespace moeserve
