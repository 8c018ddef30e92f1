// The CPU step ops (kernels/ops.h, level 2) against the tensor ops they specify: every addressing
// feature of the contract — strided per-head rows, split-K slices, grouped experts read through
// x_rows, the fused combine + norm — checked against the plain math on dense tensors (the ops on
// the paged KV cache: paged_cache_contract_test.cpp). These CPU ops are in turn the reference that
// tests/gpu holds each CUDA op to, so a wrong index here would hide one there.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "base/dtype.h"
#include "kernels/ops.h"
#include "ops_contract_support.h"

namespace moeserve {
namespace {

using testing::OpsContractTest;

TEST_F(OpsContractTest, RmsNormAddsSplitSlicesAndNormsStridedHeads) {
  // Per-head norm of 3 heads of 16 at column 8 of a 64-wide row, after adding 3 slices.
  const int tokens = 5, heads = 3, dim = 16, row = 64, offset = 8, splits = 3;
  std::vector<float> x = random_floats(tokens * row, 2.0f);
  const int64_t split_stride = int64_t(tokens) * row;
  std::vector<float> add = random_floats(splits * split_stride);
  std::vector<float> w_f32;
  std::vector<uint16_t> weight = random_bf16(dim, &w_f32);
  std::vector<float> expected_x = x, expected(tokens * heads * dim);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < heads * dim; ++i) {
      float sum = 0.0f;
      for (int s = 0; s < splits; ++s) sum += add[s * split_stride + t * row + offset + i];
      expected_x[t * row + offset + i] += sum;
    }
    TensorView slice{expected_x.data() + t * row + offset, DType::kF32, Shape{heads, dim}};
    ops::rms_norm(ctx_, slice, bf16(weight, Shape{dim}), 1e-5f,
                  TensorView{expected.data() + t * heads * dim, DType::kF32, Shape{heads, dim}});
  }
  std::vector<uint16_t> out_bf16(tokens * heads * dim);
  ops::rms_norm(ctx_, ops::RmsNormArgs{.x = x.data() + offset,
                                       .add = add.data() + offset,
                                       .add_splits = splits,
                                       .add_split_stride = split_stride,
                                       .rows = tokens * heads,
                                       .dim = dim,
                                       .rows_per_token = heads,
                                       .token_stride = row,
                                       .weight = weight.data(),
                                       .eps = 1e-5f,
                                       .out_f32 = x.data() + offset,
                                       .out_bf16 = out_bf16.data()});
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < heads * dim; ++i) {
      // x now holds the normed values in place; columns outside the slice are untouched.
      EXPECT_FLOAT_EQ(x[t * row + offset + i], expected[t * heads * dim + i]);
      EXPECT_EQ(out_bf16[t * heads * dim + i], f32_to_bf16(expected[t * heads * dim + i]));
    }
    for (int i = 0; i < offset; ++i) EXPECT_EQ(x[t * row + i], expected_x[t * row + i]);
  }
}

TEST_F(OpsContractTest, LayerNormOfStridedRowsInPlace) {
  // torch.nn.LayerNorm: (x - mean) / sqrt(biased var + eps) * weight + bias, on 6 of every 10 floats.
  const int rows = 4, dim = 6, stride = 10;
  std::vector<float> x = random_floats(rows * stride, 3.0f);
  for (float& v : x) v += 2.0f;  // a mean away from zero
  const std::vector<float> before = x, weight = random_floats(dim), bias = random_floats(dim);
  ops::layer_norm(ctx_, ops::LayerNormArgs{.x = x.data(),
                                           .rows = rows,
                                           .dim = dim,
                                           .stride = stride,
                                           .weight = weight.data(),
                                           .bias = bias.data(),
                                           .eps = 1e-6f,
                                           .out = x.data()});
  for (int r = 0; r < rows; ++r) {
    const float* in = &before[size_t(r) * stride];
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < dim; ++i) mean += in[i] / double(dim);
    for (int i = 0; i < dim; ++i) var += (in[i] - mean) * (in[i] - mean) / dim;
    for (int i = 0; i < dim; ++i) {
      EXPECT_NEAR(x[size_t(r) * stride + i], (in[i] - mean) / std::sqrt(var + 1e-6) * weight[i] + bias[i], 1e-5);
    }
    for (int i = dim; i < stride; ++i) EXPECT_EQ(x[size_t(r) * stride + i], in[i]);  // untouched
  }
}

TEST_F(OpsContractTest, RoutedExpertsThroughPermuteGemmCombineMatchPerTokenMath) {
  // router → moe_permute → gemm (SwiGLU, grouped, rows via x_rows) → gemm (grouped down) →
  // moe_combine (+ gated shared expert, fused residual add and norm) against each token's
  // Σ_k w_k · down_e(silu(gate_e x) · up_e x) + sigmoid(g) · shared, with the tensor ops.
  const int tokens = 7, hidden = 24, inter = 16, experts = 6, top_k = 2;
  std::vector<float> x = random_floats(tokens * hidden);
  std::vector<float> logits = random_floats(tokens * experts);
  std::vector<float> gu_f32, down_f32;
  std::vector<uint16_t> gate_up = random_bf16(size_t(experts) * 2 * inter * hidden, &gu_f32, 0.2f);
  std::vector<uint16_t> down = random_bf16(size_t(experts) * hidden * inter, &down_f32, 0.2f);
  std::vector<float> shared = random_floats(tokens * hidden), shared_logit = random_floats(tokens);
  std::vector<float> nw_f32;
  std::vector<uint16_t> norm_weight = random_bf16(hidden, &nw_f32);
  std::vector<float> residual = random_floats(tokens * hidden);
  const ops::RouterParams router{.top_k = top_k, .renormalize = true};

  std::vector<int32_t> ids(tokens * top_k);
  std::vector<float> weights(tokens * top_k);
  ops::route(ctx_, logits.data(), nullptr, tokens, experts, router, ids.data(), weights.data());
  std::vector<int32_t> offsets(experts + 1), positions(tokens * top_k), source_rows(tokens * top_k);
  std::vector<int64_t> load(experts, 100);
  ops::moe_permute(ctx_, ops::MoePermuteArgs{.expert_ids = ids.data(),
                                             .entries = tokens * top_k,
                                             .top_k = top_k,
                                             .experts = experts,
                                             .offsets = offsets.data(),
                                             .positions = positions.data(),
                                             .source_rows = source_rows.data(),
                                             .load_counts = load.data()});
  std::vector<float> act(tokens * top_k * inter), y(tokens * top_k * hidden);
  ops::gemm(ctx_, ops::GemmArgs{.x = x.data(),
                                .rows = tokens * top_k,
                                .k = hidden,
                                .n = inter,
                                .weight = gate_up.data(),
                                .group_stride = int64_t(2) * inter * hidden,
                                .offsets = offsets.data(),
                                .groups = experts,
                                .swiglu = true,
                                .out = act.data(),
                                .x_rows = source_rows.data()});
  ops::gemm(ctx_, ops::GemmArgs{.x = act.data(),
                                .rows = tokens * top_k,
                                .k = inter,
                                .n = hidden,
                                .weight = down.data(),
                                .group_stride = int64_t(hidden) * inter,
                                .offsets = offsets.data(),
                                .groups = experts,
                                .out = y.data()});
  std::vector<float> normed(tokens * hidden);
  std::vector<float> got_residual = residual;
  ops::moe_combine(ctx_, ops::MoeCombineArgs{.expert_out = y.data(),
                                             .positions = positions.data(),
                                             .weights = weights.data(),
                                             .tokens = tokens,
                                             .top_k = top_k,
                                             .hidden = hidden,
                                             .shared_out = shared.data(),
                                             .shared_gate_logit = shared_logit.data(),
                                             .residual = got_residual.data(),
                                             .norm_weight = norm_weight.data(),
                                             .eps = 1e-6f,
                                             .normed_f32 = normed.data()});

  // The plan: offsets count each expert's entries; each expert's rows keep token order.
  for (int e = 0; e < experts; ++e) {
    const int count = static_cast<int>(std::count(ids.begin(), ids.end(), e));
    EXPECT_EQ(offsets[e + 1] - offsets[e], count);
    EXPECT_EQ(load[e], 100 + count);
    for (int r = offsets[e] + 1; r < offsets[e + 1]; ++r) EXPECT_LT(source_rows[r - 1], source_rows[r]);
  }
  std::vector<float> expected_residual = residual, expected_normed(tokens * hidden);
  for (int t = 0; t < tokens; ++t) {
    std::vector<float> xt(x.begin() + t * hidden, x.begin() + (t + 1) * hidden), sum(hidden, 0.0f);
    for (int k = 0; k < top_k; ++k) {
      const int e = ids[t * top_k + k];
      EXPECT_EQ(source_rows[positions[t * top_k + k]], t);
      std::vector<float> gu(2 * inter), a(inter), out(hidden);
      ops::linear(ctx_, f32(xt, Shape{1, hidden}),
                  TensorView{gate_up.data() + size_t(e) * 2 * inter * hidden, DType::kBF16, Shape{2 * inter, hidden}},
                  TensorView{}, f32(gu, Shape{1, 2 * inter}));
      ops::silu_mul(ctx_, TensorView{gu.data(), DType::kF32, Shape{1, inter}},
                    TensorView{gu.data() + inter, DType::kF32, Shape{1, inter}}, f32(a, Shape{1, inter}));
      ops::linear(ctx_, f32(a, Shape{1, inter}),
                  TensorView{down.data() + size_t(e) * hidden * inter, DType::kBF16, Shape{hidden, inter}},
                  TensorView{}, f32(out, Shape{1, hidden}));
      for (int i = 0; i < hidden; ++i) sum[i] += weights[t * top_k + k] * out[i];
    }
    const float gate = 1.0f / (1.0f + std::exp(-shared_logit[t]));
    for (int i = 0; i < hidden; ++i) expected_residual[t * hidden + i] += sum[i] + gate * shared[t * hidden + i];
  }
  ops::rms_norm(ctx_, f32(expected_residual, Shape{tokens, hidden}), bf16(norm_weight, Shape{hidden}), 1e-6f,
                f32(expected_normed, Shape{tokens, hidden}));
  EXPECT_LT(max_abs_diff(got_residual, expected_residual), 1e-5);
  EXPECT_LT(max_abs_diff(normed, expected_normed), 1e-5);
}

TEST_F(OpsContractTest, SoftmaxAfterTopKRoutesByLogitsAndNormalisesTheChosen) {
  // GPT-OSS: the k largest logits (the lower index on ties), weights = softmax over those k.
  const int tokens = 3, experts = 6, top_k = 3;
  // Token 0 has a tie at 2.0; token 2's logits are large (the softmax must subtract their max).
  const std::vector<float> logits = {0.5f,  2.0f,  -1.0f, 2.0f,  1.5f, -3.0f, -2.0f, -1.0f,  -0.5f,
                                     -4.0f, -3.0f, -6.0f, 30.0f, 0.0f, 29.0f, 1.0f,  -30.0f, 28.5f};
  std::vector<int32_t> ids(tokens * top_k);
  std::vector<float> weights(tokens * top_k);
  ops::route(ctx_, logits.data(), nullptr, tokens, experts,
             ops::RouterParams{.top_k = top_k, .softmax_after_topk = true}, ids.data(), weights.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 4, /**/ 2, 1, 0, /**/ 0, 2, 5}));
  for (int t = 0; t < tokens; ++t) {
    double sum = 0.0;
    for (int k = 0; k < top_k; ++k) sum += std::exp(double(logits[t * experts + ids[t * top_k + k]]));
    for (int k = 0; k < top_k; ++k) {
      const double expected = std::exp(double(logits[t * experts + ids[t * top_k + k]])) / sum;
      EXPECT_NEAR(weights[t * top_k + k], expected, 1e-6) << "token " << t << " k " << k;
    }
  }
}

TEST_F(OpsContractTest, ClampedSwigluExpertsWithFloat32Biases) {
  // GPT-OSS's experts as the step GEMMs run them: grouped gate/up with a per-expert float32 bias,
  // the clamped SwiGLU, grouped down with its bias — against each row's plain math in double.
  const int rows = 6, hidden = 12, inter = 5, experts = 3;
  const ops::GluParams glu{.clamped = true, .alpha = 1.702f, .limit = 7.0f};
  std::vector<float> x = random_floats(rows * hidden, 2.0f);  // large enough that the clamps bite
  std::vector<float> gu_f32, down_f32;
  std::vector<uint16_t> gate_up = random_bf16(size_t(experts) * 2 * inter * hidden, &gu_f32, 1.5f);
  std::vector<uint16_t> down = random_bf16(size_t(experts) * hidden * inter, &down_f32, 0.5f);
  std::vector<float> gu_bias = random_floats(experts * 2 * inter), down_bias = random_floats(experts * hidden);
  const std::vector<int32_t> offsets = {0, 2, 2, 6};  // expert 1 has no rows
  const std::vector<int32_t> source_rows = {3, 0, 5, 1, 2, 4};
  std::vector<float> act(rows * inter), y(rows * hidden);
  ops::gemm(ctx_, ops::GemmArgs{.x = x.data(),
                                .rows = rows,
                                .k = hidden,
                                .n = inter,
                                .weight = gate_up.data(),
                                .group_stride = int64_t(2) * inter * hidden,
                                .offsets = offsets.data(),
                                .groups = experts,
                                .bias_f32 = gu_bias.data(),
                                .bias_group_stride = 2 * inter,
                                .swiglu = true,
                                .glu = glu,
                                .out = act.data(),
                                .x_rows = source_rows.data()});
  ops::gemm(ctx_, ops::GemmArgs{.x = act.data(),
                                .rows = rows,
                                .k = inter,
                                .n = hidden,
                                .weight = down.data(),
                                .group_stride = int64_t(hidden) * inter,
                                .offsets = offsets.data(),
                                .groups = experts,
                                .bias_f32 = down_bias.data(),
                                .bias_group_stride = hidden,
                                .out = y.data()});
  int clamped = 0;
  for (int e = 0; e < experts; ++e) {
    for (int r = offsets[e]; r < offsets[e + 1]; ++r) {
      const float* xr = &x[size_t(source_rows[r]) * hidden];
      std::vector<double> a(inter);
      for (int i = 0; i < inter; ++i) {
        double gate = gu_bias[e * 2 * inter + i], up = gu_bias[e * 2 * inter + inter + i];
        for (int c = 0; c < hidden; ++c) {
          gate += double(xr[c]) * gu_f32[(size_t(e) * 2 * inter + i) * hidden + c];
          up += double(xr[c]) * gu_f32[(size_t(e) * 2 * inter + inter + i) * hidden + c];
        }
        clamped += gate > 7.0 || std::abs(up) > 7.0;
        gate = std::min(gate, 7.0);
        up = std::clamp(up, -7.0, 7.0);
        a[i] = (up + 1.0) * gate / (1.0 + std::exp(-1.702 * gate));
        EXPECT_NEAR(act[size_t(r) * inter + i], a[i], 1e-4 * (1.0 + std::abs(a[i]))) << "row " << r << " i " << i;
      }
      for (int o = 0; o < hidden; ++o) {
        double expected = down_bias[e * hidden + o];
        for (int i = 0; i < inter; ++i) expected += a[i] * down_f32[(size_t(e) * hidden + o) * inter + i];
        EXPECT_NEAR(y[size_t(r) * hidden + o], expected, 1e-4 * (1.0 + std::abs(expected))) << "row " << r;
      }
    }
  }
  EXPECT_GT(clamped, 0);  // the inputs exercised the clamps
}

TEST_F(OpsContractTest, DenseGemmEmbeddingGatherAndArgmax) {
  const int rows = 3, k = 20, n = 9, vocab = 11;
  std::vector<float> x = random_floats(rows * k), w_f32, b_f32, table_f32;
  std::vector<uint16_t> weight = random_bf16(n * k, &w_f32), bias = random_bf16(n, &b_f32);
  std::vector<float> got(rows * n), expected(rows * n);
  ops::gemm(ctx_, ops::GemmArgs{.x = x.data(),
                                .rows = rows,
                                .k = k,
                                .n = n,
                                .weight = weight.data(),
                                .bias = bias.data(),
                                .out = got.data()});
  ops::linear(ctx_, f32(x, Shape{rows, k}), bf16(weight, Shape{n, k}), bf16(bias, Shape{n}),
              f32(expected, Shape{rows, n}));
  EXPECT_EQ(got, expected);

  std::vector<uint16_t> table = random_bf16(vocab * k, &table_f32);
  const std::vector<int32_t> ids = {10, 0, 4};
  std::vector<float> embedded(rows * k);
  ops::embedding(ctx_, table.data(), k, ids.data(), rows, embedded.data());
  for (int t = 0; t < rows; ++t) {
    for (int i = 0; i < k; ++i) EXPECT_EQ(embedded[t * k + i], table_f32[ids[t] * k + i]);
  }

  std::vector<float> gathered(rows * k);
  std::vector<uint16_t> gathered_bf16(rows * k);
  const std::vector<int32_t> pick = {2, 2, 0};
  ops::gather_rows(ctx_, x.data(), k, pick.data(), rows, gathered.data(), gathered_bf16.data());
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(gathered[r * k + i], x[pick[r] * k + i]);
      EXPECT_EQ(gathered_bf16[r * k + i], f32_to_bf16(x[pick[r] * k + i]));
    }
  }

  std::vector<float> scores = {1.0f, 3.0f, 3.0f, -1.0f, /* row 2 */ -5.0f, -4.0f, -4.5f, -4.0f};
  std::vector<int32_t> best(2);
  ops::argmax_rows(ctx_, scores.data(), 2, 4, best.data());
  EXPECT_EQ(best, (std::vector<int32_t>{1, 1}));  // the first of equal maxima
}

// Float32 weights (a float32 checkpoint on the CPU) in the ops' `_f32` fields: each op computes
// with the exact float32 values, as the tensor ops do on F32 views (values that bf16 cannot hold).
TEST_F(OpsContractTest, Float32WeightsInTheF32Fields) {
  const int rows = 4, k = 24, n = 10, vocab = 7, groups = 2;
  std::vector<float> x = random_floats(rows * k), weight = random_floats(groups * 2 * n * k), bias = random_floats(n);
  std::vector<float> got(rows * n), expected(rows * n);
  ops::gemm(ctx_, ops::GemmArgs{.x = x.data(),
                                .rows = rows,
                                .k = k,
                                .n = n,
                                .bias_f32 = bias.data(),
                                .out = got.data(),
                                .weight_f32 = weight.data()});
  ops::linear(ctx_, f32(x, Shape{rows, k}), f32(weight, Shape{n, k}), f32(bias, Shape{n}),
              f32(expected, Shape{rows, n}));
  EXPECT_EQ(got, expected);

  // Grouped SwiGLU: rows 0..1 to group 0, rows 2..3 to group 1 ([2n, k] each).
  const std::vector<int32_t> offsets = {0, 2, 4};
  ops::gemm(ctx_, ops::GemmArgs{.x = x.data(),
                                .rows = rows,
                                .k = k,
                                .n = n,
                                .group_stride = int64_t(2) * n * k,
                                .offsets = offsets.data(),
                                .groups = groups,
                                .swiglu = true,
                                .out = got.data(),
                                .weight_f32 = weight.data()});
  for (int g = 0; g < groups; ++g) {
    std::vector<float> xg(x.begin() + g * 2 * k, x.begin() + (g + 1) * 2 * k), gu(2 * 2 * n), act(2 * n);
    ops::linear(ctx_, f32(xg, Shape{2, k}), TensorView{weight.data() + g * 2 * n * k, DType::kF32, Shape{2 * n, k}},
                TensorView{}, f32(gu, Shape{2, 2 * n}));
    ops::silu_mul(ctx_, gu.data(), 2, n, act.data(), nullptr);
    std::copy(act.begin(), act.end(), expected.begin() + g * 2 * n);
  }
  EXPECT_EQ(got, expected);

  std::vector<float> table = random_floats(vocab * k);
  const std::vector<int32_t> ids = {6, 0, 3, 6};
  std::vector<float> embedded(rows * k);
  ops::embedding(ctx_, table.data(), k, ids.data(), rows, embedded.data());
  for (int t = 0; t < rows; ++t) {
    for (int i = 0; i < k; ++i) EXPECT_EQ(embedded[t * k + i], table[ids[t] * k + i]);
  }

  std::vector<float> norm_weight = random_floats(k), normed(rows * k), expected_normed(rows * k);
  ops::rms_norm(ctx_,
                ops::RmsNormArgs{
                    .x = x.data(), .rows = rows, .dim = k, .weight_f32 = norm_weight.data(), .out_f32 = normed.data()});
  ops::rms_norm(ctx_, f32(x, Shape{rows, k}), f32(norm_weight, Shape{k}), 1e-6f, f32(expected_normed, Shape{rows, k}));
  EXPECT_EQ(normed, expected_normed);

  // The combine's fused norm: one expert row per token of weight 1 added to the residual, then normed.
  std::vector<float> residual = random_floats(rows * k), expert_out = random_floats(rows * k), ones(rows, 1.0f);
  const std::vector<int32_t> identity = {0, 1, 2, 3};
  std::vector<float> expected_residual = residual;
  for (int i = 0; i < rows * k; ++i) expected_residual[i] += expert_out[i];
  ops::moe_combine(ctx_, ops::MoeCombineArgs{.expert_out = expert_out.data(),
                                             .positions = identity.data(),
                                             .weights = ones.data(),
                                             .tokens = rows,
                                             .top_k = 1,
                                             .hidden = k,
                                             .residual = residual.data(),
                                             .norm_weight_f32 = norm_weight.data(),
                                             .normed_f32 = normed.data()});
  ops::rms_norm(ctx_, f32(expected_residual, Shape{rows, k}), f32(norm_weight, Shape{k}), 1e-6f,
                f32(expected_normed, Shape{rows, k}));
  EXPECT_LT(max_abs_diff(residual, expected_residual), 1e-6);
  EXPECT_LT(max_abs_diff(normed, expected_normed), 1e-5);
}

}  // namespace
}  // namespace moeserve
