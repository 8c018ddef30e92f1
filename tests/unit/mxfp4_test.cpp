// MXFP4 experts as GPT-OSS publishes them (quantization_config.quant_method "mxfp4"): the config is
// accepted for GPT-OSS only, and a fused expert's `<name>_blocks` / `<name>_scales` are
// dequantized exactly, checked against the OCP Microscaling spec's e2m1 and e8m0 definitions.
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "kernels/ops.h"
#include "loader/weight_source.h"
#include "model/config.h"
#include "model/sharded_weights.h"
#include "model/weight_plan.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

Json fixture_config(const std::string& name) {
  return Json::parse(std::ifstream(testing::fixture_model(name) + "/config.json"));
}

// The e2m1 value of a 4-bit code from the spec's definition (sign, 2 exponent bits with bias 1,
// 1 mantissa bit; exponent 0 is subnormal), not a table.
float e2m1(uint8_t code) {
  const int exponent = (code >> 1) & 3, mantissa = code & 1;
  const float magnitude = exponent == 0 ? 0.5f * mantissa : std::ldexp(1.0f + 0.5f * mantissa, exponent - 1);
  return (code & 8) ? -magnitude : magnitude;
}

// U8 tensors by name; no float tensors.
class PackedSource final : public WeightSource {
 public:
  std::map<std::string, Tensor> tensors;
  Result<TensorView> require(const std::string& name, const Shape&) const override {
    return make_error("'{}' read as a float tensor", name);
  }
  Result<TensorView> optional(const std::string& name, const Shape& expected) const override {
    return require(name, expected);
  }
  Result<TensorView> optional_bytes(const std::string& name, const Shape& expected) const override {
    const auto it = tensors.find(name);
    if (it == tensors.end()) return TensorView{};
    if (!(it->second.view().shape == expected)) return make_error("'{}': shape", name);
    return it->second.view();
  }
};

TEST(Mxfp4, ConfigIsGptOssOnly) {
  Json config = fixture_config("tiny-gpt_oss");
  config["quantization_config"] = {{"quant_method", "mxfp4"}, {"modules_to_not_convert", {"model.layers.*.self_attn"}}};
  auto parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_TRUE(parsed->mxfp4_experts);
  Json mixtral = fixture_config("tiny-mixtral");
  mixtral["quantization_config"] = {{"quant_method", "mxfp4"}};
  auto refused = parse_model_config(mixtral);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message,
              ::testing::HasSubstr("'mxfp4' is supported for GptOssForCausalLM's experts only"));
}

TEST(Mxfp4, FusedExpertsDequantizeExactly) {
  Json json = fixture_config("tiny-gpt_oss");
  json["quantization_config"] = {{"quant_method", "mxfp4"}};
  auto config = parse_model_config(json);
  ASSERT_TRUE(config.ok()) << config.error().message;
  const WeightPlan plan = WeightPlan::build(*config);
  const int64_t experts = config->moe->num_experts, inter = config->moe->expert_intermediate_size;
  const int64_t hidden = config->hidden_size, groups = hidden / 32;
  const std::string name = "model.layers.0.mlp.experts.gate_up_proj";
  PackedSource source;
  // blocks [E, 2I, hidden/32, 16], scales [E, 2I, hidden/32]: a byte pattern that reaches every
  // code in both nibbles, scales 2^-3 .. 2^3.
  Tensor blocks(DType::kU8, Shape{experts, 2 * inter, groups, 16});
  Tensor scales(DType::kU8, Shape{experts, 2 * inter, groups});
  auto* b = static_cast<uint8_t*>(blocks.view().data);
  auto* s = static_cast<uint8_t*>(scales.view().data);
  for (int64_t i = 0; i < blocks.view().numel(); ++i) b[i] = static_cast<uint8_t>((i * 37 + 11) & 0xFF);
  for (int64_t i = 0; i < scales.view().numel(); ++i) s[i] = static_cast<uint8_t>(124 + i % 7);
  source.tensors.emplace(name + "_blocks", std::move(blocks));
  source.tensors.emplace(name + "_scales", std::move(scales));
  std::vector<Tensor> arena;
  const ShardedWeights weights(source, plan, arena);
  for (const int expert : {0, 5}) {
    // gate = the even rows of gate_up, up = the odd ones (GPT-OSS interleaves them).
    for (const auto& [role, first_row] : {std::pair{WeightRole::kExpertGate, 0}, std::pair{WeightRole::kExpertUp, 1}}) {
      auto slice = weights.whole(role, 0, expert);
      ASSERT_TRUE(slice.ok()) << slice.error().message;
      ASSERT_EQ(slice->dtype, DType::kBF16);
      ASSERT_EQ(slice->shape, (Shape{inter, hidden}));
      const auto* got = static_cast<const uint16_t*>(slice->data);
      for (int64_t o = 0; o < inter; ++o) {
        const int64_t row = first_row + 2 * o;
        for (int64_t i = 0; i < hidden; ++i) {
          const int64_t group = (expert * 2 * inter + row) * groups + i / 32;
          const uint8_t byte = b[group * 16 + (i % 32) / 2];
          const uint8_t code = (i % 2 == 0) ? (byte & 0x0F) : (byte >> 4);  // even index: low nibble
          const float want = e2m1(code) * std::ldexp(1.0f, s[group] - 127);
          ASSERT_EQ(bf16_to_f32(got[o * hidden + i]), want) << "expert " << expert << " out " << o << " in " << i;
        }
      }
    }
  }
  // As a backend that holds MXFP4 loads them: the up rows' bytes and scales as stored.
  auto up = weights.mxfp4_rows(plan.get(WeightRole::kExpertUp, 0), 5);
  ASSERT_TRUE(up.ok()) << up.error().message;
  ASSERT_EQ(up->blocks.size(), size_t(inter * hidden / 2));
  ASSERT_EQ(up->scales.size(), size_t(inter * groups));
  for (int64_t o = 0; o < inter; ++o) {
    const int64_t group0 = (5 * 2 * inter + 1 + 2 * o) * groups;  // the odd rows of expert 5
    for (int64_t g = 0; g < groups; ++g) {
      ASSERT_EQ(up->scales[o * groups + g], s[group0 + g]) << o;
      for (int64_t i = 0; i < 16; ++i) ASSERT_EQ(up->blocks[(o * groups + g) * 16 + i], b[(group0 + g) * 16 + i]) << o;
    }
  }
  // A hand-worked byte: 0x21 is codes 1 (low, 0.5) and 2 (high, 1.0); scale 128 doubles them.
  EXPECT_EQ(e2m1(0x1) * 2.0f, 1.0f);
  EXPECT_EQ(e2m1(0x2) * 2.0f, 2.0f);
  EXPECT_EQ(e2m1(0xF), -6.0f);
}

TEST(Mxfp4, MissingScalesAndNanScalesAreErrors) {
  Json json = fixture_config("tiny-gpt_oss");
  json["quantization_config"] = {{"quant_method", "mxfp4"}};
  auto config = parse_model_config(json);
  ASSERT_TRUE(config.ok());
  const WeightPlan plan = WeightPlan::build(*config);
  const int64_t experts = config->moe->num_experts, inter = config->moe->expert_intermediate_size;
  const int64_t groups = config->hidden_size / 32;
  const std::string name = "model.layers.0.mlp.experts.gate_up_proj";
  PackedSource source;
  source.tensors.emplace(name + "_blocks", Tensor(DType::kU8, Shape{experts, 2 * inter, groups, 16}));
  std::vector<Tensor> arena;
  const ShardedWeights weights(source, plan, arena);
  auto missing = weights.whole(WeightRole::kExpertGate, 0, 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, ::testing::HasSubstr("has no '" + name + "_scales'"));
  Tensor scales(DType::kU8, Shape{experts, 2 * inter, groups});
  static_cast<uint8_t*>(scales.view().data)[0] = 0xFF;
  source.tensors.emplace(name + "_scales", std::move(scales));
  auto nan = weights.whole(WeightRole::kExpertGate, 0, 0);
  ASSERT_FALSE(nan.ok());
  EXPECT_THAT(nan.error().message, ::testing::HasSubstr("is NaN (0xFF)"));
}

// The step GEMM on MXFP4 weights (grouped, SwiGLU) gives exactly what it gives on the same
// weights dequantized to bf16 first.
TEST(Mxfp4, GemmOnMxfp4WeightsEqualsGemmOnTheirBf16) {
  ThreadPool pool(2);
  ExecContext ctx{&pool};
  const int groups = 3, hidden = 64, inter = 32, n_weight = 2 * inter;
  const int64_t per_group = int64_t(n_weight) * hidden;
  std::vector<uint8_t> blocks(size_t(groups * per_group / 2)), scales(size_t(groups * per_group / 32));
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<uint8_t>((i * 73 + 5) & 0xFF);
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = static_cast<uint8_t>(120 + i % 5);
  std::vector<uint16_t> bf16(size_t(groups * per_group));
  for (int g = 0; g < groups; ++g) {
    ops::dequantize_mxfp4(blocks.data() + g * per_group / 2, scales.data() + g * per_group / 32, n_weight, hidden,
                          bf16.data() + g * per_group);
  }
  const std::vector<int32_t> offsets = {0, 2, 2, 5};
  std::vector<float> x(size_t(5) * hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
  std::vector<float> want(size_t(5) * inter), got(want.size());
  ops::GemmArgs args{.x = x.data(), .rows = 3, .k = hidden, .n = inter, .weight = bf16.data(),
                     .group_stride = per_group, .offsets = offsets.data(), .groups = groups, .total_rows = 5,
                     .swiglu = true, .out = want.data()};
  ops::gemm(ctx, args);
  args.weight = nullptr;
  args.weight_mxfp4 = blocks.data();
  args.mx_scale = scales.data();
  args.out = got.data();
  ops::gemm(ctx, args);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace moeserve
