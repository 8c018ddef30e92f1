// The attention ops of the CUDA backend against their CPU reference ops (kernels/cpu) over batches
// of sequences on a shared paged cache (decode rows, fresh prefills, chunks): GQA decode and
// prefill kernels with windows, chunks, temperature and sinks, MLA's absorbed form (per head and
// 16 heads a block) and its plain prefill, DeepSeek-V3.2's indexer and sparse attention, over
// float32 and e4m3 caches. Fresh random inputs per case and NaN-poisoned outputs, as
// cuda_ops_test.cpp (the other ops) does.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <tuple>

#include "cuda_ops_support.h"

namespace moeserve {
namespace {

using testing::CudaOpsTest;
using testing::f32_view;
using testing::relative_error;
using testing::view;
// A batch of sequences over a shared paged cache: decode rows, a fresh prefill, a chunk.
struct PagedBatch {
  std::vector<std::vector<int32_t>> tables;
  std::vector<SequenceView> sequences;
  std::vector<int32_t> positions, table_offsets, packed_tables, slots;
  int tokens = 0;
};

PagedBatch make_batch(const std::vector<std::pair<int, int>>& context_and_queries, int block_size, int num_blocks,
                      std::mt19937& rng) {
  PagedBatch batch;
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  int next = 0;
  for (auto [context, queries] : context_and_queries) {
    std::vector<int32_t> table;
    for (int b = 0; b < (context + block_size - 1) / block_size; ++b) table.push_back(free_blocks.at(next++));
    batch.tables.push_back(table);
  }
  for (size_t s = 0; s < context_and_queries.size(); ++s) {
    auto [context, queries] = context_and_queries[s];
    const int offset = static_cast<int>(batch.packed_tables.size());
    batch.packed_tables.insert(batch.packed_tables.end(), batch.tables[s].begin(), batch.tables[s].end());
    batch.sequences.push_back(SequenceView{batch.tokens, queries, context, batch.tables[s]});
    for (int i = 0; i < queries; ++i) {
      const int pos = context - queries + i;
      batch.positions.push_back(pos);
      batch.table_offsets.push_back(offset);
      batch.slots.push_back(batch.tables[s][pos / block_size] * block_size + pos % block_size);
    }
    batch.tokens += queries;
  }
  return batch;
}

TEST_F(CudaOpsTest, PagedAttentionGqa) {
  const int block_size = 16, num_blocks = 24;
  // The last three have enough (row, kv head) pairs for the group kernel (44 rows × 8 / × 4 / × 2);
  // the last is group 8, which the CUDA-core prefill kernel tiles 8 rows at a time.
  for (auto [heads, kv_heads, head_dim, window] :
       {std::tuple{8, 2, 64, 0}, {6, 6, 20, 0}, {4, 1, 128, 13}, {32, 8, 128, 0}, {16, 4, 100, 9}, {16, 2, 64, 21}}) {
    for (bool fp8 : {false, true}) {
      const int entry = 2 * kv_heads * head_dim;
      PagedBatch batch = make_batch({{1, 1}, {37, 37}, {70, 5}, {50, 1}}, block_size, num_blocks, rng_);
      // Earlier positions of every sequence are already cached; this batch adds its own rows.
      auto cache = random_floats(size_t(num_blocks) * block_size * entry);
      auto k = random_floats(size_t(batch.tokens) * kv_heads * head_dim);
      auto v = random_floats(k.size());
      auto q = random_floats(size_t(batch.tokens) * heads * head_dim);
      // --kv-cache-dtype fp8: the cache holds e4m3 bytes; the CPU gets the values they decode to.
      if (fp8) {
        for (auto* values : {&cache, &k, &v})
          for (float& x : *values) x = round_to_f8e4m3(x);
      }
      std::vector<float> cpu_cache = cache, expected(q.size());
      const PagedKvLayer cpu_kv{cpu_cache.data(), num_blocks, block_size, entry};
      ops::kv_write(cpu_, cpu_kv, batch.sequences, f32_view(k, Shape{batch.tokens, kv_heads * head_dim}),
                    f32_view(v, Shape{batch.tokens, kv_heads * head_dim}));
      const float scale = 1.0f / std::sqrt(float(head_dim));
      // The fp8 cache under a checkpoint's KV cache scales: the bytes read as their values times
      // k (keys) and v (values), which the kernels fold into scale and value_scale.
      const ops::KvScales kv_scales = fp8 ? ops::KvScales{.k = 0.37f, .v = 2.6f} : ops::KvScales{};
      std::vector<float> scaled_cache = cpu_cache;
      for (size_t i = 0; i < scaled_cache.size(); ++i) {
        scaled_cache[i] *= int(i % entry) < kv_heads * head_dim ? kv_scales.k : kv_scales.v;
      }
      ops::attention(cpu_, f32_view(q, Shape{batch.tokens, heads, head_dim}),
                     PagedKvLayer{scaled_cache.data(), num_blocks, block_size, entry}, batch.sequences,
                     ops::AttentionParams{heads, kv_heads, head_dim, scale, window},
                     f32_view(expected, Shape{batch.tokens, heads, head_dim}));
      // The GPU writes [k | v] rows from one interleaved source, as the fused qkv row holds them.
      std::vector<float> kv_rows(size_t(batch.tokens) * entry);
      for (int t = 0; t < batch.tokens; ++t) {
        std::copy_n(k.data() + t * kv_heads * head_dim, kv_heads * head_dim, kv_rows.data() + t * entry);
        std::copy_n(v.data() + t * kv_heads * head_dim, kv_heads * head_dim,
                    kv_rows.data() + t * entry + kv_heads * head_dim);
      }
      float* dcache = nullptr;
      if (fp8) {
        std::vector<uint8_t> bytes(cpu_cache.size());
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = f32_to_f8e4m3(cpu_cache[i]);
        dcache = reinterpret_cast<float*>(upload(bytes));
      } else {
        dcache = upload(cache);
        const int32_t* slots = upload(batch.slots);
        cuda::kv_write(exec_, dcache, entry, slots, batch.tokens, upload(kv_rows), entry);
        EXPECT_EQ(download(dcache, cache.size()), cpu_cache);
      }
      const std::string label = std::string(fp8 ? "scaled fp8 cache " : "") + std::to_string(heads) + "/" +
                                std::to_string(kv_heads) + "/" + std::to_string(head_dim);
      const cuda::AttentionArgs args{.q = upload(q),
                                     .q_stride = heads * head_dim,
                                     .tokens = batch.tokens,
                                     .num_heads = heads,
                                     .group = heads / kv_heads,
                                     .cache = dcache,
                                     .cache_fp8 = fp8,
                                     .block_size = block_size,
                                     .entry_size = entry,
                                     .key_offset = 0,
                                     .value_offset = kv_heads * head_dim,
                                     .kv_head_stride = head_dim,
                                     .key_dim = head_dim,
                                     .value_dim = head_dim,
                                     .scale = scale * kv_scales.k,
                                     .value_scale = kv_scales.v,
                                     .sliding_window = window,
                                     .block_tables = upload(batch.packed_tables),
                                     .table_offsets = upload(batch.table_offsets),
                                     .positions = upload(batch.positions),
                                     .out = poisoned<float>(q.size())};
      cuda::paged_attention(exec_, args);
      EXPECT_LT(relative_error(download(args.out, q.size()), expected), 1e-5) << label;
      // The tiled prefill kernels on the same batch: tiles of at most `rows` consecutive rows of one sequence.
      auto tiles_of = [&](int rows) {
        std::vector<int32_t> tiles;
        for (const SequenceView& seq : batch.sequences) {
          for (int first = 0; first < seq.num_query; first += rows) {
            tiles.push_back(seq.query_begin + first);
            tiles.push_back(std::min(rows, seq.num_query - first));
          }
        }
        return tiles;
      };
      const int group = heads / kv_heads;
      // CUDA cores: blocks of up to 64 queries (rows × group).
      for (int rows : {16, 64 / group}) {
        ASSERT_EQ(cuda::prefill_attention_supported(args, rows), rows * group <= 64) << rows;
        if (rows * group > 64) continue;
        const std::vector<int32_t> tiles = tiles_of(rows);
        cuda::AttentionArgs tiled = args;
        tiled.out = poisoned<float>(q.size());
        cuda::paged_attention_prefill(exec_, tiled, upload(tiles), static_cast<int>(tiles.size() / 2), rows);
        EXPECT_LT(relative_error(download(tiled.out, q.size()), expected), 1e-5)
            << "prefill " << label << " rows " << rows;
      }
      // Tensor cores: blocks of up to 128 queries, the tile rows a model with these heads gets.
      // Split bf16 keeps ~16 mantissa bits of Q, K, P and V (mma_gemm split's 2e-5); plain bf16
      // rounds each to 8 bits (2⁻⁹ ≈ 2e-3 per operand).
      const int tile_rows = cuda::prefill_tile_rows(head_dim, group);
      ASSERT_EQ(cuda::prefill_attention_mma_supported(args, tile_rows), head_dim % 16 == 0);
      if (head_dim % 16 != 0) {
        EXPECT_EQ(tile_rows, 64 / group);
        continue;
      }
      EXPECT_EQ(tile_rows, 128 / group);
      for (int rows : {16, tile_rows}) {
        const std::vector<int32_t> tiles = tiles_of(rows);
        for (auto [split, tolerance] : {std::pair{true, 2e-5}, {false, 1e-2}}) {
          cuda::AttentionArgs mma_args = args;
          mma_args.out = poisoned<float>(q.size());
          cuda::paged_attention_prefill_mma(exec_, mma_args, upload(tiles), static_cast<int>(tiles.size() / 2), rows,
                                            split);
          EXPECT_LT(relative_error(download(mma_args.out, q.size()), expected), tolerance)
              << "prefill mma split=" << split << " " << label << " rows " << rows;
        }
      }
    }
  }
}

// GPT-OSS's sinks and sliding windows, Llama 4's chunks and attention temperature, alone and
// together, through every attention kernel (per head, per kv-head group, CUDA-core and
// tensor-core prefill tiles) against the CPU step op. The first two cases have enough
// (row, kv head) pairs for the group kernel; the fourth is the tiny fixtures' heads (group 3, dim 16).
TEST_F(CudaOpsTest, PagedAttentionSinksChunksAndTemperature) {
  struct Case {
    int heads, kv_heads, head_dim, window, chunk;
    float temperature_floor, temperature_scale;
    bool sinks;
  };
  const int block_size = 16, num_blocks = 24;
  for (const Case& c : {Case{8, 4, 64, 13, 0, 0.0f, 0.0f, true}, Case{16, 4, 64, 0, 24, 0.0f, 0.0f, false},
                        Case{16, 2, 128, 0, 0, 8.0f, 0.1f, false}, Case{6, 2, 16, 12, 0, 0.0f, 0.0f, true},
                        Case{8, 1, 64, 0, 24, 4.0f, 0.5f, true}}) {
    const int entry = 2 * c.kv_heads * c.head_dim;
    const PagedBatch batch = make_batch({{1, 1}, {37, 37}, {70, 5}, {50, 1}}, block_size, num_blocks, rng_);
    auto cache = random_floats(size_t(num_blocks) * block_size * entry);
    auto q = random_floats(size_t(batch.tokens) * c.heads * c.head_dim);
    std::vector<float> sinks = random_floats(c.heads, 2.0f);
    if (c.sinks) sinks[0] = 6.0f;  // a sink that outweighs every key
    ops::AttentionArgs args{.q = q.data(),
                            .q_stride = c.heads * c.head_dim,
                            .tokens = batch.tokens,
                            .num_heads = c.heads,
                            .group = c.heads / c.kv_heads,
                            .cache = cache.data(),
                            .block_size = block_size,
                            .entry_size = entry,
                            .key_offset = 0,
                            .value_offset = c.kv_heads * c.head_dim,
                            .kv_head_stride = c.head_dim,
                            .key_dim = c.head_dim,
                            .value_dim = c.head_dim,
                            .scale = 1.0f / std::sqrt(float(c.head_dim)),
                            .sliding_window = c.window,
                            .chunk_size = c.chunk,
                            .temperature_floor = c.temperature_floor,
                            .temperature_scale = c.temperature_scale,
                            .block_tables = batch.packed_tables.data(),
                            .table_offsets = batch.table_offsets.data(),
                            .positions = batch.positions.data(),
                            .sinks = c.sinks ? sinks.data() : nullptr};
    std::vector<float> expected(q.size());
    args.out = expected.data();
    ops::paged_attention(cpu_, args);
    const std::string label = std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + "/" +
                              std::to_string(c.head_dim) + " window " + std::to_string(c.window) + " chunk " +
                              std::to_string(c.chunk) + " temperature " + std::to_string(c.temperature_floor) +
                              (c.sinks ? " sinks" : "");
    cuda::AttentionArgs device = args;
    device.q = upload(q);
    device.cache = upload(cache);
    device.block_tables = upload(batch.packed_tables);
    device.table_offsets = upload(batch.table_offsets);
    device.positions = upload(batch.positions);
    device.sinks = c.sinks ? upload(sinks) : nullptr;
    device.out = poisoned<float>(q.size());
    cuda::paged_attention(exec_, device);
    EXPECT_LT(relative_error(download(device.out, q.size()), expected), 1e-5) << label;
    // The tiled prefill kernels: tiles of at most `rows` consecutive rows of one sequence.
    const int group = c.heads / c.kv_heads;
    for (int rows : {16, cuda::prefill_tile_rows(c.head_dim, group)}) {
      std::vector<int32_t> tiles;
      for (const SequenceView& seq : batch.sequences) {
        for (int first = 0; first < seq.num_query; first += rows) {
          tiles.push_back(seq.query_begin + first);
          tiles.push_back(std::min(rows, seq.num_query - first));
        }
      }
      const int32_t* device_tiles = upload(tiles);
      const int num_tiles = static_cast<int>(tiles.size() / 2);
      if (cuda::prefill_attention_supported(device, rows)) {
        device.out = poisoned<float>(q.size());
        cuda::paged_attention_prefill(exec_, device, device_tiles, num_tiles, rows);
        EXPECT_LT(relative_error(download(device.out, q.size()), expected), 1e-5) << label << " prefill rows " << rows;
      }
      ASSERT_TRUE(cuda::prefill_attention_mma_supported(device, rows)) << label;
      for (auto [split, tolerance] : {std::pair{true, 2e-5}, {false, 1e-2}}) {
        device.out = poisoned<float>(q.size());
        cuda::paged_attention_prefill_mma(exec_, device, device_tiles, num_tiles, rows, split);
        EXPECT_LT(relative_error(download(device.out, q.size()), expected), tolerance)
            << label << " prefill mma split=" << split << " rows " << rows;
      }
    }
  }
}

TEST_F(CudaOpsTest, MlaAbsorbedAttentionAndProjections) {
  const int block_size = 16, num_blocks = 20;
  for (auto [heads, rank, rope_dim, nope, value] : {std::tuple{4, 32, 8, 16, 16}, {3, 48, 6, 10, 12}}) {
    const int entry = rank + rope_dim;
    PagedBatch batch = make_batch({{1, 1}, {33, 33}, {60, 1}}, block_size, num_blocks, rng_);
    auto cache = random_floats(size_t(num_blocks) * block_size * entry);
    auto q = random_floats(size_t(batch.tokens) * heads * (nope + rope_dim));
    auto kv_b = random_floats(size_t(heads) * (nope + value) * rank, 0.2f);
    std::vector<float> q_abs(size_t(batch.tokens) * heads * entry);
    ops::mla_absorb_q(cpu_, f32_view(q, Shape{batch.tokens, heads, nope + rope_dim}),
                      f32_view(kv_b, Shape{heads * (nope + value), rank}), nope, value,
                      f32_view(q_abs, Shape{batch.tokens, heads, entry}));
    const cuda::MlaDims dims{batch.tokens, heads, nope, rope_dim, value, rank};
    const float* dkv_b = upload(kv_b);
    float* dq_abs = poisoned<float>(q_abs.size());
    cuda::mla_absorb_q(exec_, dims, upload(q), dkv_b, dq_abs);
    EXPECT_LT(relative_error(download(dq_abs, q_abs.size()), q_abs), 1e-5);

    std::vector<float> latent(size_t(batch.tokens) * heads * rank);
    const PagedKvLayer cpu_kv{cache.data(), num_blocks, block_size, entry};
    ops::mla_attention_absorbed(cpu_, f32_view(q_abs, Shape{batch.tokens, heads, entry}), cpu_kv, batch.sequences,
                                heads, 0.3f, f32_view(latent, Shape{batch.tokens, heads, rank}));
    float* dlatent = poisoned<float>(latent.size());
    cuda::paged_attention(exec_, cuda::AttentionArgs{.q = upload(q_abs),
                                                     .q_stride = heads * entry,
                                                     .tokens = batch.tokens,
                                                     .num_heads = heads,
                                                     .group = heads,
                                                     .cache = upload(cache),
                                                     .block_size = block_size,
                                                     .entry_size = entry,
                                                     .key_dim = entry,
                                                     .value_dim = rank,
                                                     .scale = 0.3f,
                                                     .block_tables = upload(batch.packed_tables),
                                                     .table_offsets = upload(batch.table_offsets),
                                                     .positions = upload(batch.positions),
                                                     .out = dlatent});
    EXPECT_LT(relative_error(download(dlatent, latent.size()), latent), 1e-5);

    std::vector<float> projected(size_t(batch.tokens) * heads * value);
    ops::mla_project_v(cpu_, f32_view(latent, Shape{batch.tokens, heads, rank}),
                       f32_view(kv_b, Shape{heads * (nope + value), rank}), nope, value,
                       f32_view(projected, Shape{batch.tokens, heads, value}));
    float* dprojected = poisoned<float>(projected.size());
    cuda::mla_project_v(exec_, dims, upload(latent), dkv_b, dprojected);
    EXPECT_LT(relative_error(download(dprojected, projected.size()), projected), 1e-5);
  }
}

// MLA's absorbed attention as the models run it (heads a multiple of 16: attention_mla.cu's
// kernel, 16 heads a block) against the CPU step op on the same arguments: V2-Lite's latent
// (rank 512 + rope 64) and a small one, float32 and e4m3 caches (the latter under a k_scale,
// folded into scale and value_scale), all keys and (DeepSeek-V3.2) chosen keys.
TEST_F(CudaOpsTest, MlaAbsorbedAttentionSixteenHeadsABlock) {
  const int block_size = 16, num_blocks = 40;
  for (auto [heads, rank, rope_dim] : {std::tuple{16, 512, 64}, {32, 64, 8}}) {
    for (bool fp8 : {false, true}) {
      for (bool sparse : {false, true}) {
        const int entry = rank + rope_dim;
        PagedBatch batch = make_batch({{1, 1}, {40, 40}, {150, 1}, {77, 3}}, block_size, num_blocks, rng_);
        auto cache = random_floats(size_t(num_blocks) * block_size * entry);
        std::vector<uint8_t> bytes(cache.size());
        for (size_t i = 0; fp8 && i < cache.size(); ++i) bytes[i] = f32_to_f8e4m3(cache[i]);
        const auto q = random_floats(size_t(batch.tokens) * heads * entry, 0.2f);
        // Sparse: each row's chosen keys, a random ascending subset of [0, position], then -1.
        const int keys_per_row = 24;
        std::vector<int32_t> chosen(size_t(batch.tokens) * keys_per_row, -1);
        for (int t = 0; sparse && t < batch.tokens; ++t) {
          std::vector<int32_t> keys(batch.positions[t] + 1);
          std::iota(keys.begin(), keys.end(), 0);
          std::shuffle(keys.begin(), keys.end(), rng_);
          keys.resize(std::min<size_t>(keys.size(), keys_per_row - t % 5));
          std::sort(keys.begin(), keys.end());
          std::copy(keys.begin(), keys.end(), chosen.begin() + size_t(t) * keys_per_row);
        }
        const float k_scale = fp8 ? 0.37f : 1.0f;
        ops::AttentionArgs args{.q = q.data(),
                                .q_stride = heads * entry,
                                .tokens = batch.tokens,
                                .num_heads = heads,
                                .group = heads,
                                .cache = fp8 ? reinterpret_cast<const float*>(bytes.data()) : cache.data(),
                                .cache_fp8 = fp8,
                                .block_size = block_size,
                                .entry_size = entry,
                                .key_dim = entry,
                                .value_dim = rank,
                                .scale = 0.05f * k_scale,
                                .value_scale = k_scale,
                                .block_tables = batch.packed_tables.data(),
                                .table_offsets = batch.table_offsets.data(),
                                .positions = batch.positions.data(),
                                .key_positions = sparse ? chosen.data() : nullptr,
                                .keys_per_row = sparse ? keys_per_row : 0};
        std::vector<float> expected(size_t(batch.tokens) * heads * rank, NAN);
        args.out = expected.data();
        ops::paged_attention(cpu_, args);
        ASSERT_TRUE(cuda::mla_attention_takes(args));  // 45 rows × heads / 16 blocks
        args.q = upload(q);
        args.cache = fp8 ? reinterpret_cast<const float*>(upload(bytes)) : upload(cache);
        args.block_tables = upload(batch.packed_tables);
        args.table_offsets = upload(batch.table_offsets);
        args.positions = upload(batch.positions);
        args.key_positions = sparse ? upload(chosen) : nullptr;
        args.out = poisoned<float>(expected.size());
        cuda::paged_attention(exec_, args);
        EXPECT_LT(relative_error(download(args.out, expected.size()), expected), 1e-5)
            << heads << " heads, rank " << rank << (fp8 ? ", fp8" : "") << (sparse ? ", sparse" : "");
      }
    }
  }
}

// DeepSeek-V3.2's ops: the indexer's choice of keys (exactly the CPU's: a short context keeps
// every key; one of 5000 keys takes three tiles of the kernel's buffer at topk 2048), MLA's
// absorbed attention over only those keys, and the LayerNorm of strided rows.
TEST_F(CudaOpsTest, IndexerSparseAttentionAndLayerNorm) {
  const int block_size = 16, num_blocks = 340;
  const int heads = 4, dim = 16, rank = 24, rope_dim = 8, index_heads = 3;
  const int key_offset = rank + rope_dim, entry = key_offset + dim;  // [latent | rope key | index key]
  PagedBatch batch = make_batch({{1, 1}, {33, 33}, {60, 1}, {5000, 2}}, block_size, num_blocks, rng_);
  const auto cache = random_floats(size_t(num_blocks) * block_size * entry);
  const auto q_index = random_floats(size_t(batch.tokens) * index_heads * dim);
  const auto weights = random_floats(size_t(batch.tokens) * index_heads);
  const auto q_abs = random_floats(size_t(batch.tokens) * heads * key_offset);
  const float* dcache = upload(cache);
  for (int topk : {6, 2048}) {
    ops::IndexerArgs args{.q = q_index.data(),
                          .q_stride = index_heads * dim,
                          .weights = weights.data(),
                          .weights_stride = index_heads,
                          .tokens = batch.tokens,
                          .heads = index_heads,
                          .head_dim = dim,
                          .scale = 0.25f,
                          .weight_scale = 0.577f,
                          .topk = topk,
                          .cache = cache.data(),
                          .block_size = block_size,
                          .entry_size = entry,
                          .key_offset = key_offset,
                          .block_tables = batch.packed_tables.data(),
                          .table_offsets = batch.table_offsets.data(),
                          .positions = batch.positions.data()};
    std::vector<int32_t> chosen(size_t(batch.tokens) * topk);
    args.out = chosen.data();
    ops::indexer_topk(cpu_, args);
    args.q = upload(q_index);
    args.weights = upload(weights);
    args.cache = dcache;
    args.block_tables = upload(batch.packed_tables);
    args.table_offsets = upload(batch.table_offsets);
    args.positions = upload(batch.positions);
    args.out = poisoned<int32_t>(chosen.size());
    cuda::indexer_topk(exec_, args);
    EXPECT_EQ(download(args.out, chosen.size()), chosen) << "topk " << topk;

    ops::AttentionArgs attention{.q = q_abs.data(),
                                 .q_stride = heads * key_offset,
                                 .tokens = batch.tokens,
                                 .num_heads = heads,
                                 .group = heads,
                                 .cache = cache.data(),
                                 .block_size = block_size,
                                 .entry_size = entry,
                                 .key_dim = key_offset,
                                 .value_dim = rank,
                                 .scale = 0.3f,
                                 .block_tables = batch.packed_tables.data(),
                                 .table_offsets = batch.table_offsets.data(),
                                 .positions = batch.positions.data(),
                                 .key_positions = chosen.data(),
                                 .keys_per_row = topk};
    std::vector<float> latent(size_t(batch.tokens) * heads * rank);
    attention.out = latent.data();
    ops::paged_attention(cpu_, attention);
    attention.q = upload(q_abs);
    attention.cache = dcache;
    attention.block_tables = args.block_tables;
    attention.table_offsets = args.table_offsets;
    attention.positions = args.positions;
    attention.key_positions = upload(chosen);
    attention.out = poisoned<float>(latent.size());
    cuda::paged_attention(exec_, attention);
    EXPECT_LT(relative_error(download(attention.out, latent.size()), latent), 1e-5) << "topk " << topk;
  }

  const int rows = 37, norm_dim = 40, stride = 45;
  auto x = random_floats(size_t(rows) * stride, 3.0f);
  const auto gamma = random_floats(norm_dim), beta = random_floats(norm_dim);
  std::vector<float> expected = x;
  ops::layer_norm(cpu_, ops::LayerNormArgs{.x = expected.data(),
                                           .rows = rows,
                                           .dim = norm_dim,
                                           .stride = stride,
                                           .weight = gamma.data(),
                                           .bias = beta.data(),
                                           .out = expected.data()});
  float* dx = upload(x);
  cuda::layer_norm(exec_, cuda::LayerNormArgs{.x = dx,
                                              .rows = rows,
                                              .dim = norm_dim,
                                              .stride = stride,
                                              .weight = upload(gamma),
                                              .bias = upload(beta),
                                              .out = dx});
  EXPECT_LT(relative_error(download(dx, x.size()), expected), 1e-5);
}

// The plain-form MLA prefill of one piece, CPU and CUDA on the same arguments: a fresh prefill,
// a chunk after cached context, query tiles smaller than the piece (several score tiles) and the
// fp8 latent cache under a k_scale; in float32 (the float32-like mode) and in TF32 (the bf16
// mode), whose inputs round to 2^-11 relative.
TEST_F(CudaOpsTest, MlaPrefillPlainFormMatchesTheCpuOp) {
  const int block_size = 16, num_blocks = 24;
  // extra: floats after [c | k_pe] in each cache entry (DeepSeek-V3.2's index key).
  for (auto [heads, rank, rope_dim, nope, value, extra] :
       {std::tuple{4, 32, 8, 16, 16, 0}, {3, 48, 6, 10, 12, 0}, {4, 32, 8, 16, 16, 16}}) {
    for (auto [fp8, tf32] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
      // fp8: the latent cache as e4m3 bytes (--kv-cache-dtype fp8)
      const int entry = rank + rope_dim + extra;
      PagedBatch batch = make_batch({{40, 40}, {70, 24}}, block_size, num_blocks, rng_);
      auto cache = random_floats(size_t(num_blocks) * block_size * entry);
      std::vector<uint8_t> cache_bytes(cache.size());
      for (size_t i = 0; fp8 && i < cache.size(); ++i) {
        cache_bytes[i] = f32_to_f8e4m3(cache[i]);
        cache[i] = f8e4m3_to_f32(cache_bytes[i]);
      }
      auto q = random_floats(size_t(batch.tokens) * heads * (nope + rope_dim));
      auto kv_b = random_floats(size_t(heads) * (nope + value) * rank, 0.2f);
      const ops::MlaDims dims{batch.tokens, heads, nope, rope_dim, value, rank};
      std::vector<float> expected(size_t(batch.tokens) * heads * value, NAN);
      float* out = poisoned<float>(expected.size());
      const float* dq = upload(q);
      const float* dcache = fp8 ? reinterpret_cast<const float*>(upload(cache_bytes)) : upload(cache);
      const float* dkv_b = upload(kv_b);
      for (const SequenceView& seq : batch.sequences) {
        const int begin = seq.context_len - seq.num_query;
        ops::MlaPrefillArgs args{.dims = dims,
                                 .q = q.data(),
                                 .first_row = seq.query_begin,
                                 .count = seq.num_query,
                                 .begin = begin,
                                 .cache = cache.data(),
                                 .cache_scale = fp8 ? 0.37f : 1.0f,  // a checkpoint's k_scale
                                 .entry_size = entry,
                                 .block_size = block_size,
                                 .block_table = seq.block_table.data(),
                                 .kv_b = kv_b.data(),
                                 .scale = 0.3f,
                                 .out = expected.data()};
        ops::mla_prefill_attention(cpu_, args);
        const std::vector<int32_t> table(seq.block_table.begin(), seq.block_table.end());
        args.q = dq;
        args.cache = dcache;
        args.cache_fp8 = fp8;
        args.block_table = upload(table);
        args.kv_b = dkv_b;
        args.query_tile = 7;
        args.workspace = poisoned<float>(cuda::mla_prefill_workspace_floats(dims, seq.context_len, args.query_tile));
        args.out = out;
        cuda::mla_prefill_attention(exec_, args, tf32);
      }
      const double error = relative_error(download(out, expected.size()), expected);
      if (tf32) std::printf("MLA prefill in TF32, %d heads: relative error %.3g\n", heads, error);
      EXPECT_LT(error, tf32 ? 3e-3 : 1e-5)
          << heads << " heads, " << extra << " extra" << (fp8 ? ", fp8 cache" : "") << (tf32 ? ", tf32" : "");
    }
  }
}

}  // namespace
}  // namespace moeserve
