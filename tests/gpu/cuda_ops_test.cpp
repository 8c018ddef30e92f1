// Every CUDA op against its CPU reference op (kernels/cpu) over a grid of shapes — odd sizes,
// one and many tokens, empty experts — with fresh random inputs per case and NaN-poisoned
// outputs, so an unwritten element or a wrong index fails. The GEMMs (and SwiGLU's elementwise
// part and the casts around them) are in cuda_gemm_test.cpp, the attention ops in
// cuda_attention_test.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "cuda_ops_support.h"
#include "backend/cuda/cuda_runner_device.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"

namespace moeserve {
namespace {

using testing::CudaOpsTest;
using testing::f32_view;
using testing::relative_error;
using testing::view;

TEST_F(CudaOpsTest, Embedding) {
  for (auto [vocab, hidden, tokens] : {std::tuple{37, 67, 1}, {512, 64, 13}, {100, 4096, 5}, {10, 4100, 2}}) {
    std::vector<float> table_f32;
    auto table = random_bf16(size_t(vocab) * hidden, 1.0f, &table_f32);
    std::vector<int32_t> ids(tokens);
    for (auto& id : ids) id = random_int(0, vocab - 1);
    std::vector<float> expected(size_t(tokens) * hidden);
    ops::embedding(cpu_, view(table.data(), DType::kBF16, Shape{vocab, hidden}), ids,
                   f32_view(expected, Shape{tokens, hidden}));
    float* out = poisoned<float>(expected.size());
    cuda::embedding(exec_, upload(table), hidden, upload(ids), tokens, out);
    EXPECT_EQ(download(out, expected.size()), expected) << vocab << "x" << hidden;
  }
}

TEST_F(CudaOpsTest, AddRmsNormFusedAndPerHead) {
  for (auto [rows, dim] : {std::pair{1, 64}, {7, 67}, {33, 4096}, {3, 1000}}) {
    auto x = random_floats(size_t(rows) * dim, 2.0f);
    auto add = random_floats(x.size());
    std::vector<float> w_f32;
    auto weight = random_bf16(dim, 1.0f, &w_f32);
    std::vector<float> sum = x, expected(x.size());
    ops::add_inplace(cpu_, f32_view(sum, Shape{rows, dim}), f32_view(add, Shape{rows, dim}));
    ops::rms_norm(cpu_, f32_view(sum, Shape{rows, dim}), view(weight.data(), DType::kBF16, Shape{dim}), 1e-5f,
                  f32_view(expected, Shape{rows, dim}));
    float* dx = upload(x);
    float* out = poisoned<float>(x.size());
    uint16_t* out_bf16 = poisoned<uint16_t>(x.size());
    cuda::rms_norm(exec_, cuda::RmsNormArgs{.x = dx,
                                            .add = upload(add),
                                            .rows = rows,
                                            .dim = dim,
                                            .weight = upload(weight),
                                            .eps = 1e-5f,
                                            .out_f32 = out,
                                            .out_bf16 = out_bf16});
    EXPECT_LT(relative_error(download(dx, x.size()), sum), 1e-6);
    const auto got = download(out, x.size());
    EXPECT_LT(relative_error(got, expected), 1e-5) << rows << "x" << dim;
    const auto got_bf16 = download(out_bf16, x.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got_bf16[i], f32_to_bf16(got[i])) << i;
  }
  // Per-head norm on a column slice of a wider row (Qwen3's q/k norm inside the fused qkv row).
  const int tokens = 5, heads = 3, head_dim = 24, row = 100, offset = 8;
  auto x = random_floats(size_t(tokens) * row);
  std::vector<float> w_f32;
  auto weight = random_bf16(head_dim, 1.0f, &w_f32);
  std::vector<float> expected = x;
  for (int t = 0; t < tokens; ++t) {
    TensorView slice = view(expected.data() + t * row + offset, DType::kF32, Shape{heads, head_dim});
    ops::rms_norm(cpu_, slice, view(weight.data(), DType::kBF16, Shape{head_dim}), 1e-6f, slice);
  }
  float* dx = upload(x);
  cuda::rms_norm(exec_, cuda::RmsNormArgs{.x = dx + offset,
                                          .rows = tokens * heads,
                                          .dim = head_dim,
                                          .rows_per_token = heads,
                                          .token_stride = row,
                                          .weight = upload(weight),
                                          .eps = 1e-6f,
                                          .out_f32 = dx + offset});
  EXPECT_LT(relative_error(download(dx, x.size()), expected), 1e-6);
}

// RoPE against ops::rope, and its fused cache write (ops::kv_write of the rotated rows).
TEST_F(CudaOpsTest, RopeHalfAndInterleavedWithCacheWrite) {
  // (heads, head_stride, rotary offset, half): float4-aligned cache entries, an odd stride (entries
  // copied by element), and a Mixtral-sized row (2,560 pairs: several rounds per thread).
  for (auto [heads, head_stride, offset, half] : {std::tuple{3, 20, 4, 8}, {3, 21, 5, 8}, {40, 128, 0, 64}}) {
    for (bool interleaved : {false, true}) {
      for (int tokens : {1, 9}) {
        auto x = random_floats(size_t(tokens) * heads * head_stride);
        std::vector<float> inv_freq(half);
        for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / (2 * half)) * 0.7f;
        std::vector<int32_t> positions(tokens);
        for (auto& p : positions) p = random_int(0, 5000);
        std::vector<float> expected = x;
        ops::rope(cpu_, f32_view(expected, Shape{tokens, heads, head_stride}), positions,
                  ops::RopeParams{inv_freq, offset, 1.3f, interleaved});
        // The fused cache write: each token's last two heads (after rotation) into slot 3t + 1 of a
        // poisoned cache whose other slots must stay poisoned.
        const int entry_size = 2 * head_stride, entry_offset = (heads - 2) * head_stride, num_slots = 3 * tokens;
        std::vector<int32_t> slots(tokens);
        for (int t = 0; t < tokens; ++t) slots[t] = 3 * t + 1;
        float* dx = upload(x);
        float* cache = poisoned<float>(size_t(num_slots) * entry_size);
        cuda::rope(exec_, cuda::RopeArgs{.x = dx,
                                         .tokens = tokens,
                                         .heads = heads,
                                         .head_stride = head_stride,
                                         .token_stride = heads * head_stride,
                                         .rotary_offset = offset,
                                         .inv_freq = upload(inv_freq),
                                         .half = half,
                                         .attention_factor = 1.3f,
                                         .interleaved = interleaved,
                                         .positions = upload(positions),
                                         .cache = cache,
                                         .entry_size = entry_size,
                                         .entry_offset = entry_offset,
                                         .slots = upload(slots)});
        const std::vector<float> rotated = download(dx, x.size());
        EXPECT_LT(relative_error(rotated, expected), 1e-5) << interleaved << " " << tokens << " heads " << heads;
        const std::vector<float> cached = download(cache, size_t(num_slots) * entry_size);
        for (int slot = 0; slot < num_slots; ++slot) {
          for (int i = 0; i < entry_size; ++i) {
            const float got = cached[size_t(slot) * entry_size + i];
            if (slot % 3 != 1) {
              ASSERT_TRUE(std::isnan(got)) << "slot " << slot << " was written";
            } else {
              const int t = slot / 3;
              ASSERT_EQ(got, rotated[size_t(t) * heads * head_stride + entry_offset + i]) << slot;
            }
          }
        }
        // --kv-cache-dtype fp8: the same entries written as e4m3 bytes, each the CPU's rounding of
        // the rotated value divided by its KV cache scale (the first half of the entry by k, the
        // rest by v; the rotation itself is checked above; half 0 writes without rotating).
        const ops::KvScales kv_scales{.k = 0.37f, .v = 2.6f};
        const int value_begin = entry_size / 2;
        uint8_t* cache_fp8 = poisoned<uint8_t>(size_t(num_slots) * entry_size);
        cuda::rope(exec_, cuda::RopeArgs{.x = upload(rotated),
                                         .tokens = tokens,
                                         .heads = heads,
                                         .head_stride = head_stride,
                                         .token_stride = heads * head_stride,
                                         .positions = upload(positions),
                                         .cache = reinterpret_cast<float*>(cache_fp8),
                                         .entry_size = entry_size,
                                         .entry_offset = entry_offset,
                                         .slots = upload(slots),
                                         .cache_fp8 = true,
                                         .cache_scales = kv_scales,
                                         .cache_value_begin = value_begin});
        const std::vector<uint8_t> bytes = download(cache_fp8, size_t(num_slots) * entry_size);
        for (int slot = 0; slot < num_slots; ++slot) {
          for (int i = 0; i < entry_size; ++i) {
            const uint8_t got = bytes[size_t(slot) * entry_size + i];
            const int t = slot / 3;
            const float value = rotated[size_t(t) * heads * head_stride + entry_offset + i];
            ASSERT_EQ(got, slot % 3 != 1 ? 0xff : f32_to_f8e4m3(value / (i < value_begin ? kv_scales.k : kv_scales.v)))
                << "fp8 slot " << slot << " at " << i;
          }
        }
      }
    }
  }
}

TEST_F(CudaOpsTest, RouterEveryVariant) {
  struct Case {
    int experts;
    ops::RouterParams params;
    bool bias;
  };
  const std::vector<Case> cases = {
      {8, {.top_k = 2, .renormalize = true}, false},                 // Mixtral
      {60, {.top_k = 4}, false},                                     // Qwen2-MoE
      {16, {.top_k = 4, .num_groups = 4, .topk_groups = 2}, false},  // V2 group max
      {16,
       {.top_k = 4,
        .sigmoid = true,
        .num_groups = 4,
        .topk_groups = 2,
        .group_score_top2_sum = true,
        .renormalize = true,
        .scaling_factor = 2.5f},
       true},  // V3 noaux_tc
      {256,
       {.top_k = 8,
        .sigmoid = true,
        .num_groups = 8,
        .topk_groups = 4,
        .group_score_top2_sum = true,
        .renormalize = true,
        .scaling_factor = 2.5f},
       true},                                         // V3 full size
      {7, {.top_k = 7, .renormalize = true}, false},  // k = E, odd E
      {32, {.top_k = 4, .softmax_after_topk = true}, false},  // GPT-OSS
      {128, {.top_k = 4, .softmax_after_topk = true}, true},
      {16, {.top_k = 1, .sigmoid = true}, false},  // Llama 4
  };
  for (const Case& c : cases) {
    for (int tokens : {1, 37}) {
      auto logits = random_floats(size_t(tokens) * c.experts, 2.0f);
      std::vector<float> bias;
      if (c.bias) {
        bias = random_floats(c.experts, 0.1f);
        for (float& b : bias) b = std::abs(b);
      }
      std::vector<int32_t> ids(size_t(tokens) * c.params.top_k);
      std::vector<float> weights(ids.size());
      ops::route(cpu_, f32_view(logits, Shape{tokens, c.experts}),
                 c.bias ? f32_view(bias, Shape{c.experts}) : TensorView{}, c.params,
                 view(ids.data(), DType::kI32, Shape{tokens, c.params.top_k}),
                 f32_view(weights, Shape{tokens, c.params.top_k}));
      int32_t* dids = poisoned<int32_t>(ids.size());
      float* dweights = poisoned<float>(ids.size());
      cuda::route(exec_, upload(logits), c.bias ? upload(bias) : nullptr, tokens, c.experts, c.params, dids, dweights);
      EXPECT_EQ(download(dids, ids.size()), ids) << c.experts << " experts, " << tokens << " tokens";
      EXPECT_LT(relative_error(download(dweights, ids.size()), weights), 1e-6);
    }
  }
}

// permute → gather → (identity experts) → combine equals scatter_add_rows over every expert.
// The last three plans exceed kMoePermuteOneBlockEntries and run the multi-block kernels (with
// a last chunk that ends mid-warp: 2,049 × 3 entries) and up to kMaxExperts experts.
TEST_F(CudaOpsTest, MoePermuteGatherCombine) {
  for (auto [tokens, experts, top_k, hidden] :
       {std::tuple{1, 8, 2, 64}, {5, 16, 2, 33}, {300, 8, 2, 128}, {64, 60, 4, 96}, {2, 8, 2, 4100},
        {8192, 128, 8, 4}, {2049, 512, 3, 8}, {1500, 256, 8, 4}}) {
    std::vector<int32_t> ids;
    for (int t = 0; t < tokens; ++t) {
      std::vector<int32_t> all(experts);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng_);
      // Experts >= experts / 2 are never chosen when possible: empty experts in every case.
      std::stable_partition(all.begin(), all.end(), [&](int e) { return e < std::max(top_k, experts / 2); });
      std::shuffle(all.begin(), all.begin() + std::max(top_k, experts / 2), rng_);
      ids.insert(ids.end(), all.begin(), all.begin() + top_k);
    }
    const int entries = tokens * top_k;
    auto weights = random_floats(entries);
    auto x = random_floats(size_t(tokens) * hidden);
    auto expert_scale = random_floats(experts);  // "expert e" multiplies its rows by scale[e]
    int32_t* offsets = poisoned<int32_t>(experts + 1);
    int32_t* positions = poisoned<int32_t>(entries);
    int32_t* source_rows = poisoned<int32_t>(entries);
    int64_t* load = upload(std::vector<int64_t>(experts, 5));
    const size_t workspace_ints = cuda::moe_permute_workspace_ints(entries, experts);
    ASSERT_EQ(workspace_ints > 0, entries > cuda::kMoePermuteOneBlockEntries);
    int32_t* workspace = workspace_ints > 0 ? poisoned<int32_t>(workspace_ints) : nullptr;
    cuda::moe_permute(exec_, cuda::MoePermuteArgs{upload(ids), entries, top_k, experts, offsets, positions,
                                                  source_rows, load, workspace});
    const auto h_offsets = download(offsets, experts + 1);
    const auto h_positions = download(positions, entries);
    const auto h_sources = download(source_rows, entries);
    const auto h_load = download(load, experts);
    ASSERT_EQ(h_offsets[0], 0);
    ASSERT_EQ(h_offsets[experts], entries);
    for (int e = 0; e < experts; ++e) {
      const int count = static_cast<int>(std::count(ids.begin(), ids.end(), e));
      ASSERT_EQ(h_offsets[e + 1] - h_offsets[e], count) << e;
      ASSERT_EQ(h_load[e], 5 + count);
    }
    std::vector<int> last_position(experts, -1);
    for (int i = 0; i < entries; ++i) {
      const int pos = h_positions[i];
      ASSERT_GE(pos, h_offsets[ids[i]]);
      ASSERT_LT(pos, h_offsets[ids[i] + 1]);
      ASSERT_EQ(h_sources[pos], i / top_k);
      ASSERT_GT(pos, last_position[ids[i]]) << "expert " << ids[i] << " lost its entries' order at " << i;
      last_position[ids[i]] = pos;
    }
    // "Expert outputs" in permuted order: row pos = scale[expert] * x[source].
    float* gathered = poisoned<float>(size_t(entries) * hidden);
    uint16_t* gathered_bf16 = poisoned<uint16_t>(size_t(entries) * hidden);
    cuda::gather_rows(exec_, upload(x), hidden, source_rows, entries, gathered, gathered_bf16);
    auto g = download(gathered, size_t(entries) * hidden);
    const auto gb = download(gathered_bf16, g.size());
    for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(gb[i], f32_to_bf16(g[i]));
    for (int i = 0; i < entries; ++i) {
      const int pos = h_positions[i];
      for (int d = 0; d < hidden; ++d) {
        ASSERT_EQ(g[size_t(pos) * hidden + d], x[size_t(i / top_k) * hidden + d]);
        g[size_t(pos) * hidden + d] *= expert_scale[ids[i]];
      }
    }
    auto shared = random_floats(size_t(tokens) * hidden);
    auto gate = random_floats(tokens);
    std::vector<float> expected(size_t(tokens) * hidden, 0.0f);
    for (int e = 0; e < experts; ++e) {
      std::vector<int32_t> rows;
      std::vector<float> w;
      std::vector<float> y;
      for (int i = 0; i < entries; ++i) {
        if (ids[i] != e) continue;
        rows.push_back(i / top_k);
        w.push_back(weights[i]);
        y.insert(y.end(), g.begin() + size_t(h_positions[i]) * hidden, g.begin() + size_t(h_positions[i] + 1) * hidden);
      }
      if (rows.empty()) continue;
      ops::scatter_add_rows(cpu_, f32_view(y, Shape{int64_t(rows.size()), hidden}), rows, w,
                            f32_view(expected, Shape{tokens, hidden}));
    }
    std::vector<int32_t> all_rows(tokens);
    std::iota(all_rows.begin(), all_rows.end(), 0);
    std::vector<float> scale(tokens);
    for (int t = 0; t < tokens; ++t) scale[t] = 1.0f / (1.0f + std::exp(-gate[t]));
    ops::scatter_add_rows(cpu_, f32_view(shared, Shape{tokens, hidden}), all_rows, scale,
                          f32_view(expected, Shape{tokens, hidden}));
    float* out = poisoned<float>(expected.size());
    const cuda::MoeCombineArgs combine{.expert_out = upload(g),
                                       .positions = positions,
                                       .weights = upload(weights),
                                       .tokens = tokens,
                                       .top_k = top_k,
                                       .hidden = hidden,
                                       .shared_out = upload(shared),
                                       .shared_gate_logit = upload(gate),
                                       .out = out};
    cuda::moe_combine(exec_, combine);
    EXPECT_LT(relative_error(download(out, expected.size()), expected), 1e-6) << tokens << " tokens";

    // Fused with the residual add + RMSNorm that follows: residual += combined, then its norm.
    auto residual = random_floats(expected.size(), 2.0f);
    std::vector<float> norm_w;
    auto norm_weight = random_bf16(hidden, 1.0f, &norm_w);
    std::vector<float> summed = residual, normed_expected(expected.size());
    ops::add_inplace(cpu_, f32_view(summed, Shape{tokens, hidden}), f32_view(expected, Shape{tokens, hidden}));
    ops::rms_norm(cpu_, f32_view(summed, Shape{tokens, hidden}), view(norm_weight.data(), DType::kBF16, Shape{hidden}),
                  1e-5f, f32_view(normed_expected, Shape{tokens, hidden}));
    float* d_residual = upload(residual);
    float* normed = poisoned<float>(expected.size());
    uint16_t* normed_bf16 = poisoned<uint16_t>(expected.size());
    cuda::MoeCombineArgs fused = combine;
    fused.out = nullptr;
    fused.residual = d_residual;
    fused.norm_weight = upload(norm_weight);
    fused.eps = 1e-5f;
    fused.normed_f32 = normed;
    fused.normed_bf16 = normed_bf16;
    cuda::moe_combine(exec_, fused);
    EXPECT_LT(relative_error(download(d_residual, summed.size()), summed), 1e-6) << tokens << " tokens";
    const std::vector<float> got_normed = download(normed, expected.size());
    EXPECT_LT(relative_error(got_normed, normed_expected), 1e-5) << tokens << " tokens";
    const std::vector<uint16_t> got_bf16 = download(normed_bf16, expected.size());
    for (size_t i = 0; i < got_bf16.size(); ++i) ASSERT_EQ(got_bf16[i], f32_to_bf16(got_normed[i])) << i;
  }
}

// argmax_rows against the host's argmax_token, per vocabulary (1,003: element by element;
// 32,000 and 151,936: float4 batches): random rows, a tied maximum (the first index wins), NaN
// entries (never chosen), a maximum in the last element, and a row of -inf only (token 0).
// Llama 4's input-scaled experts: the scaled rows, the permuted rows pointed at their entries and
// the weights made 1 (0 kept) exactly as the CPU op gives them, on a float4 width and an odd one.
TEST_F(CudaOpsTest, ScaleExpertInputs) {
  for (auto [tokens, top_k, hidden] : {std::tuple{5, 1, 96}, {7, 2, 45}}) {
    const int entries = tokens * top_k;
    auto x = random_floats(size_t(tokens) * hidden);
    auto weights = random_floats(entries);
    weights[1] = 0.0f;  // an entry of another EP rank
    std::vector<int32_t> positions(entries);
    std::iota(positions.begin(), positions.end(), 0);
    std::shuffle(positions.begin(), positions.end(), rng_);
    std::vector<float> x_scaled(size_t(entries) * hidden), cpu_weights = weights;
    std::vector<int32_t> entry_rows(entries, -1);
    ops::ScaleExpertInputsArgs args{.x = x.data(),
                                    .hidden = hidden,
                                    .entries = entries,
                                    .top_k = top_k,
                                    .positions = positions.data(),
                                    .weights = cpu_weights.data(),
                                    .x_scaled = x_scaled.data(),
                                    .entry_rows = entry_rows.data()};
    ops::scale_expert_inputs(cpu_, args);
    ops::ScaleExpertInputsArgs device = args;
    device.x = upload(x);
    device.positions = upload(positions);
    device.weights = upload(weights);
    device.x_scaled = poisoned<float>(x_scaled.size());
    device.entry_rows = poisoned<int32_t>(entries);
    cuda::scale_expert_inputs(exec_, device);
    EXPECT_EQ(download(device.x_scaled, x_scaled.size()), x_scaled);
    EXPECT_EQ(download(device.entry_rows, size_t(entries)), entry_rows);
    EXPECT_EQ(download(device.weights, size_t(entries)), cpu_weights);
  }
}

TEST_F(CudaOpsTest, ArgmaxRowsMatchTheHost) {
  for (int vocab : {1003, 32000, 151936}) {
    const int rows = 6;
    std::vector<float> logits = random_floats(size_t(rows) * vocab, 3.0f);
    auto row = [&](int r) { return logits.begin() + size_t(r) * vocab; };
    std::fill(row(1), row(1) + vocab, 0.5f);  // all tied: index 0
    row(2)[vocab / 3] = 50.0f;
    row(2)[vocab / 2] = 50.0f;  // tied maximum: the first
    for (int i = 1; i < vocab; i += 7) row(3)[i] = std::nanf("");  // not the first: the host would keep that one
    row(4)[vocab - 1] = 60.0f;
    std::fill(row(5), row(5) + vocab, -INFINITY);
    int32_t* out = poisoned<int32_t>(rows);
    cuda::argmax_rows(exec_, upload(logits), rows, vocab, out);
    const std::vector<int32_t> got = download(out, rows);
    for (int r = 0; r < rows; ++r) {
      const std::span<const float> values(&*row(r), size_t(vocab));
      EXPECT_EQ(got[r], argmax_token(values)) << "vocab " << vocab << " row " << r;
    }
    EXPECT_EQ(got[2], vocab / 3);
    EXPECT_EQ(got[4], vocab - 1);
    EXPECT_EQ(got[5], 0);
  }
}

// sample_rows against the host sampler (apply_edits + sample_with_uniform): rows with ties
// (a quarter of the logits on a 0.5 grid), masked and penalised tokens, every filter alone and
// combined, greedy after penalties, draws at 0 and just under 1, chosen rows scattered among
// rows it must leave alone; and the logprobs of unedited rows against compute_logprobs.
TEST_F(CudaOpsTest, SampleRowsMatchTheHostSampler) {
  const std::vector<SamplingParams> settings = {
      {.temperature = 1.0f},
      {.temperature = 0.7f, .top_k = 50},
      {.temperature = 1.3f, .top_p = 0.8f},
      {.temperature = 0.9f, .min_p = 0.1f},
      {.temperature = 1.0f, .top_p = 0.95f, .top_k = 200, .min_p = 0.02f},
      {.temperature = 0.0f, .repetition_penalty = 1.5f},
      {.temperature = 0.8f, .top_k = 1},
      {.temperature = 5.0f, .top_p = 0.5f, .presence_penalty = 0.7f, .frequency_penalty = 0.4f},
      {.temperature = 0.6f, .presence_penalty = -0.5f, .repetition_penalty = 0.8f},
      {.temperature = 2.0f, .top_p = 0.3f, .min_p = 0.5f, .frequency_penalty = 1.0f, .repetition_penalty = 1.2f},
  };
  for (int vocab : {1003, 32000, 151936}) {
    const int total_rows = 40;
    std::vector<float> logits = random_floats(size_t(total_rows) * vocab, 3.0f);
    for (size_t i = 0; i < logits.size(); i += 4) logits[i] = std::round(logits[i] * 2.0f) / 2.0f;
    std::vector<cuda::SampleChoice> choices;
    std::vector<cuda::SampleEdit> edits;
    std::vector<int32_t> expected(total_rows, -1);
    std::vector<std::pair<size_t, TokenLogprob>> expected_logprobs;  // (choice, host logprobs)
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (int row = 0; row < total_rows; ++row) {
      if (row % 4 == 1) continue;  // left alone
      const SamplingParams& params = settings[choices.size() % settings.size()];
      const double u = row == 0 ? 0.0 : row == 2 ? std::nextafter(1.0, 0.0) : uniform(rng_);
      // Every third row has no edits and asks for logprobs (0, 3 or 20 alternatives).
      const bool with_logprobs = row % 3 == 0;
      const int logprobs = with_logprobs ? std::array{0, 3, 20}[(row / 3) % 3] : -1;
      std::vector<int32_t> prompt(with_logprobs ? 0 : random_int(0, 300));
      std::vector<int32_t> output(with_logprobs ? 0 : random_int(0, 40)), masked(with_logprobs ? 0 : random_int(0, 3));
      for (auto* ids : {&prompt, &output, &masked})
        for (int32_t& id : *ids) id = random_int(0, vocab - 1);
      // Output tokens among the row's top 8, so penalties change the choice.
      const float* row_logits = &logits[size_t(row) * vocab];
      std::vector<int32_t> top(vocab);
      std::iota(top.begin(), top.end(), 0);
      std::partial_sort(top.begin(), top.begin() + 8, top.end(),
                        [&](int32_t a, int32_t b) { return row_logits[a] > row_logits[b]; });
      for (int32_t& id : output) id = top[random_int(0, 7)];
      const std::vector<LogitEdit> row_edits = logit_edits(params, vocab, prompt, output, masked);
      std::vector<float> host(logits.begin() + size_t(row) * vocab, logits.begin() + size_t(row + 1) * vocab);
      const std::vector<float> raw = host;
      apply_edits(host, params, row_edits);
      expected[row] = sample_with_uniform(host, params, u);
      if (with_logprobs) {
        ASSERT_TRUE(row_edits.empty());
        expected_logprobs.emplace_back(choices.size(), compute_logprobs(raw, expected[row], logprobs));
      }
      TokenChoice choice;
      choice.params = params;
      choice.uniform = u;
      choice.edits = row_edits;
      choice.logprobs = logprobs;
      choices.push_back(device_choice(choice, row, int(edits.size())));
      for (const LogitEdit& e : row_edits)
        edits.push_back({.token = e.token, .output_count = e.output_count, .seen = e.seen, .masked = e.masked});
    }
    const int rows = int(choices.size());
    const size_t workspace_bytes = cuda::sample_rows_workspace_bytes(rows, vocab);
    void* workspace = poisoned<unsigned char>(workspace_bytes);
    int32_t* out = poisoned<int32_t>(total_rows);
    auto* logprobs_out =
        reinterpret_cast<cuda::SampleLogprobs*>(poisoned<float>(rows * sizeof(cuda::SampleLogprobs) / 4));
    cuda::sample_rows(exec_, upload(logits), vocab, upload(choices), rows, upload(edits), workspace, workspace_bytes,
                      out, logprobs_out);
    const std::vector<int32_t> got = download(out, total_rows);
    for (int row = 0; row < total_rows; ++row)
      EXPECT_EQ(got[row], expected[row]) << "vocab " << vocab << " row " << row;
    const std::vector<cuda::SampleLogprobs> got_logprobs = download(logprobs_out, rows);
    ASSERT_FALSE(expected_logprobs.empty());
    for (const auto& [choice, want] : expected_logprobs) {
      const cuda::SampleLogprobs& lp = got_logprobs[choice];
      EXPECT_NEAR(lp.logprob, want.logprob, 1e-5) << "vocab " << vocab << " choice " << choice;
      ASSERT_EQ(lp.top_count, int(want.top.size())) << choice;
      for (int j = 0; j < lp.top_count; ++j) {
        EXPECT_EQ(lp.top_ids[j], want.top[j].first) << choice << " top " << j;
        EXPECT_NEAR(lp.top_logprobs[j], want.top[j].second, 1e-5) << choice << " top " << j;
      }
    }
  }
}

TEST_F(CudaOpsTest, RandomWeightsHaveTheRequestedDistribution) {
  const int64_t count = 1 << 22;
  uint16_t* out = poisoned<uint16_t>(count);
  cuda::fill_random_bf16(exec_, out, count, 1234, 0.02f, 0.0f);
  const auto bits = download(out, count);
  double sum = 0.0, sum_sq = 0.0;
  for (uint16_t b : bits) {
    const double v = bf16_to_f32(b);
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum_sq += v * v;
  }
  EXPECT_NEAR(sum / count, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sum_sq / count), 0.02, 2e-4);
  cuda::fill_random_bf16(exec_, out, 1000, 1, 0.0f, 1.0f);
  const auto ones = download(out, 1000);
  for (uint16_t b : ones) ASSERT_EQ(bf16_to_f32(b), 1.0f);
}

}  // namespace
}  // namespace moeserve
