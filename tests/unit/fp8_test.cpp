// FP8 (issue 21) below the model: the e4m3 rounding every quantizer relies on, block-scaled
// weights in the CPU's linear (the reference the GPU's FP8 GEMMs will be held to), the emulation
// of the GPU's dynamic activation quantization, and the loader's refusals of fp8 checkpoints it
// cannot read exactly.
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/thread_pool.h"
#include "kernels/ops.h"
#include "loader/safetensors.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

bool is_nan_code(uint8_t code) { return (code & 0x7f) == 0x7f; }

TEST(Fp8E4M3, EveryFiniteCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if (is_nan_code(static_cast<uint8_t>(code))) continue;
    const float value = f8e4m3_to_f32(static_cast<uint8_t>(code));
    EXPECT_EQ(f32_to_f8e4m3(value), code) << "code " << code << " value " << value;
  }
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
}

TEST(Fp8E4M3, RoundsToNearestTiesToEvenAndSaturates) {
  // Between each pair of adjacent positive codes: just below the midpoint rounds down, just above
  // rounds up, the midpoint itself to the code with the even mantissa.
  for (int code = 0; code < 0x7e; ++code) {
    const float low = f8e4m3_to_f32(static_cast<uint8_t>(code));
    const float high = f8e4m3_to_f32(static_cast<uint8_t>(code + 1));
    const float mid = (low + high) / 2;
    EXPECT_EQ(f32_to_f8e4m3(std::nextafter(mid, low)), code);
    EXPECT_EQ(f32_to_f8e4m3(std::nextafter(mid, high)), code + 1);
    EXPECT_EQ(f32_to_f8e4m3(mid), (code % 2 == 0) ? code : code + 1) << "tie between " << low << " and " << high;
    EXPECT_EQ(f32_to_f8e4m3(-mid), 0x80 | ((code % 2 == 0) ? code : code + 1));
  }
  EXPECT_EQ(f32_to_f8e4m3(1e6f), 0x7e);
  EXPECT_EQ(f32_to_f8e4m3(-500.0f), 0xfe);
  EXPECT_EQ(f32_to_f8e4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the smallest subnormal
  EXPECT_TRUE(is_nan_code(f32_to_f8e4m3(NAN)));
}

class Fp8LinearTest : public ::testing::Test {
 protected:
  std::vector<float> random_floats(size_t count, float scale) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(count);
    for (float& x : v) x = dist(rng_);
    return v;
  }
  std::mt19937 rng_{7};
  ThreadPool pool_{2};
  ExecContext ctx_{&pool_};
};

// An fp8 weight with per-row scales of 32-column blocks, starting 8 columns into its first block
// (a TP column shard), partial last block: linear equals linear over the dequantized float32
// weight.
TEST_F(Fp8LinearTest, BlockScaledWeightEqualsItsDequantizedFloat32) {
  const int tokens = 3, n = 70, k = 100, block = 32, offset = 8;
  const int scale_cols = (offset + k + block - 1) / block;
  std::vector<uint8_t> bits(n * k);
  for (uint8_t& b : bits) {
    do b = static_cast<uint8_t>(rng_());
    while (is_nan_code(b));
  }
  std::vector<float> scales = random_floats(n * scale_cols, 0.01f);  // [n, scale_cols]
  std::vector<float> dequantized(n * k);                             // [n, k]
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < k; ++c) {
      dequantized[r * k + c] = f8e4m3_to_f32(bits[r * k + c]) * scales[r * scale_cols + (c + offset) / block];
    }
  }
  std::vector<float> x = random_floats(tokens * k, 1.0f);  // [tokens, k]
  std::vector<float> got(tokens * n), want(tokens * n);    // [tokens, n]
  const ops::Fp8Scales fp8{.scale = scales.data(), .block = block, .offset = offset};
  ops::linear(ctx_, TensorView{x.data(), DType::kF32, Shape{tokens, k}},
              TensorView{bits.data(), DType::kF8E4M3, Shape{n, k}}, TensorView{},
              TensorView{got.data(), DType::kF32, Shape{tokens, n}}, &fp8);
  ops::linear(ctx_, TensorView{x.data(), DType::kF32, Shape{tokens, k}},
              TensorView{dequantized.data(), DType::kF32, Shape{n, k}}, TensorView{},
              TensorView{want.data(), DType::kF32, Shape{tokens, n}});
  for (int i = 0; i < tokens * n; ++i) EXPECT_FLOAT_EQ(got[i], want[i]) << i;
}

// The GPU's dynamic activation quantization: each 128-column group's largest magnitude maps to
// ±448 · scale exactly, every value is an e4m3 multiple of its group's scale, and the error stays
// within e4m3's half-ulp (2^-4 relative). ue8m0 scales are powers of two.
TEST_F(Fp8LinearTest, ActivationQuantizationKeepsEachGroupWithinE4m3Precision) {
  const int rows = 4, cols = 300;  // groups of 128, 128, 44
  for (const bool ue8m0 : {false, true}) {
    std::vector<float> x = random_floats(rows * cols, 3.0f);
    const std::vector<float> original = x;
    ops::quantize_activations_fp8(x.data(), rows, cols, ops::kFp8ActivationGroup, ue8m0);
    for (int r = 0; r < rows; ++r) {
      for (int c0 = 0; c0 < cols; c0 += ops::kFp8ActivationGroup) {
        const int c1 = std::min(cols, c0 + ops::kFp8ActivationGroup);
        float amax = 0.0f;
        for (int c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(original[r * cols + c]));
        float scale = amax / 448.0f;
        if (ue8m0) scale = std::exp2(std::ceil(std::log2(scale)));
        for (int c = c0; c < c1; ++c) {
          const float before = original[r * cols + c], after = x[r * cols + c];
          EXPECT_EQ(f8e4m3_to_f32(f32_to_f8e4m3(after / scale)) * scale, after);  // representable
          EXPECT_LE(std::fabs(after - before), std::max(std::fabs(before) / 16, std::ldexp(scale, -10)));
        }
        if (!ue8m0) {
          float quantized_amax = 0.0f;
          for (int c = c0; c < c1; ++c) quantized_amax = std::max(quantized_amax, std::fabs(x[r * cols + c]));
          EXPECT_FLOAT_EQ(quantized_amax, amax);
        }
      }
    }
  }
}

// The loader reads an fp8 tensor only with the scales that give it meaning.
TEST(Fp8Loader, RefusesWhatItCannotDequantizeExactly) {
  const std::string fp8_model = testing::fixture_model("tiny-qwen3_moe-fp8");
  LoadOptions options;
  options.hf_overrides = {{"quantization_config", nullptr}};  // the user dropped it
  auto dropped = load_model(fp8_model, options);
  ASSERT_FALSE(dropped.ok());
  EXPECT_THAT(dropped.error().message, HasSubstr("is F8_E4M3, but config.json has no fp8 quantization_config"));

  options.hf_overrides = {{"quantization_config", {{"weight_block_size", {64, 64}}}}};  // scales of another grid
  auto wrong_grid = load_model(fp8_model, options);
  ASSERT_FALSE(wrong_grid.ok());
  EXPECT_THAT(wrong_grid.error().message, HasSubstr("q_proj.weight_scale_inv' has shape [4, 2], expected [2, 1]"));

  options.hf_overrides = {{"quantization_config", {{"weight_block_size", nullptr}}}};  // per-tensor
  auto per_tensor = load_model(fp8_model, options);
  ASSERT_FALSE(per_tensor.ok());
  EXPECT_THAT(per_tensor.error().message, HasSubstr("per-tensor fp8 scales"));
}

// A norm stored as F8_E4M3 (no checkpoint quantizes those, and none carries scales for them).
TEST(Fp8Loader, RefusesAnFp8TensorThatIsNotALinearWeight) {
  const std::string fp8_model = testing::fixture_model("tiny-qwen3_moe-fp8");
  auto source = SafetensorsFile::open(fp8_model + "/model.safetensors");
  ASSERT_TRUE(source.ok()) << source.error().message;
  std::vector<Tensor> converted;
  std::vector<NamedTensor> tensors;
  for (const auto& [name, entry] : (*source)->entries()) {
    TensorView view = (*source)->view(name);
    if (name == "model.norm.weight") {
      Tensor fp8(DType::kF8E4M3, view.shape);
      std::vector<float> values(view.numel());
      convert_to_f32(view.dtype, view.data, values.data(), values.size());
      for (size_t i = 0; i < values.size(); ++i) fp8.view().as<uint8_t>()[i] = f32_to_f8e4m3(values[i]);
      converted.push_back(std::move(fp8));
      view = converted.back().view();
    }
    tensors.push_back({name, view});
  }
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "fp8-norm";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(fp8_model + "/config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(write_safetensors((dir / "model.safetensors").string(), tensors).ok());
  auto loaded = load_model(dir.string(), LoadOptions{});
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message,
              HasSubstr("tensor 'model.norm.weight' is F8_E4M3, but only the Linear weights of an fp8 checkpoint"));
}

}  // namespace
}  // namespace moeserve
