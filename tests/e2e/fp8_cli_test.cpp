// FP8 as a user drives it (issue 21): an fp8 checkpoint through `moeserve logits` equals
// transformers, `-q fp8` and `--kv-cache-dtype fp8` run `generate` on the demo model, and the
// formats moeserve does not run are refused by name with a non-zero exit, never a crash.
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "loader/safetensors.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

constexpr double kTimeout = 300;

testing::CommandResult moeserve_cli(std::vector<std::string> args) {
  args.insert(args.begin(), MOESERVE_BINARY);
  return testing::run_command(args, testing::CommandOptions{.timeout_s = kTimeout});
}

TEST(Fp8Cli, Fp8CheckpointLogitsMatchTransformers) {
  const std::string model = testing::fixture_model("tiny-qwen3_moe-fp8");
  const testing::Reference reference(model + "/reference.safetensors");
  const std::vector<int32_t> prompt = reference.ids("prompt_2");
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string out = (std::filesystem::path(::testing::TempDir()) / "fp8_logits.safetensors").string();
  const auto result = moeserve_cli({"logits", model, "--device", "cpu", "--ids", ids, "--out", out});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const testing::Reference written(out);
  const TensorView logits = written.tensor("logits");
  const TensorView expected = reference.tensor("logits_2");
  ASSERT_EQ(logits.dim(0), expected.dim(0));
  EXPECT_LT(testing::max_row_relative_error(logits.as<float>(), expected.as<float>(), expected.dim(0), expected.dim(1)),
            1e-4);
}

TEST(Fp8Cli, QuantizedWeightsAndFp8KvGenerate) {
  const auto result =
      moeserve_cli({"generate", testing::demo_model(), "--device", "cpu", "-q", "fp8", "--kv-cache-dtype", "fp8",
                    "--prompt", "The LORD is my shepherd;", "--max-tokens", "6", "--temperature", "0", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["output_ids"].size(), 6u);
}

TEST(Fp8Cli, UnsupportedFormatsAreRefusedByName) {
  const struct {
    std::vector<std::string> flags;
    std::string message;
  } cases[] = {
      {{"--quantization", "awq"}, "--quantization: awq not in {fp8}"},
      {{"-q", "int8"}, "int8 not in {fp8}"},
      {{"--kv-cache-dtype", "fp8_e5m2"}, "--kv-cache-dtype: fp8_e5m2 not in {auto,fp8,fp8_e4m3}"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"generate", testing::demo_model(), "--prompt", "x", "--max-tokens", "1"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const auto result = moeserve_cli(args);
    EXPECT_NE(result.exit_code, 0) << c.message;
    EXPECT_LT(result.exit_code, 128) << c.message << ": a signal";
    EXPECT_THAT(result.output, HasSubstr(c.message));
  }
  // A checkpoint whose fp8 tensors lost their quantization_config: refused, naming a tensor.
  const auto dropped = moeserve_cli({"logits", testing::fixture_model("tiny-qwen3_moe-fp8"), "--device", "cpu",
                                     "--hf-overrides", R"({"quantization_config": null})", "--ids", "1,2", "--out",
                                     (std::filesystem::path(::testing::TempDir()) / "never.safetensors").string()});
  EXPECT_EQ(dropped.exit_code, 1) << dropped.output;
  EXPECT_THAT(dropped.output, HasSubstr("is F8_E4M3, but config.json has no fp8 quantization_config"));
}

// A checkpoint carrying KV cache scales (vLLM's <attention>.k_scale / .v_scale): under
// --kv-cache-dtype fp8, a scale other than 1 is refused by name (moeserve stores K/V at scale 1.0
// and would silently differ from vLLM serving that checkpoint); scales of 1 and --kv-cache-dtype
// auto (scales ignored, as vLLM does for a 16-bit cache) run; a scale that is not a float scalar
// or [1] is an error naming it.
TEST(Fp8Cli, CheckpointKvCacheScalesOtherThanOneAreRefusedUnderFp8Kv) {
  namespace fs = std::filesystem;
  const fs::path source = testing::fixture_model("tiny-mixtral");
  const fs::path dir = fs::path(::testing::TempDir()) / "kv_scales_checkpoint";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(source / "config.json", dir / "config.json");
  fs::copy_file(source / "model.safetensors", dir / "weights.safetensors");
  auto weights = SafetensorsFile::open((source / "model.safetensors").string());
  ASSERT_TRUE(weights.ok()) << weights.error().message;
  nlohmann::json weight_map = nlohmann::json::object();
  for (const auto& [name, entry] : (*weights)->entries()) weight_map[name] = "weights.safetensors";
  weight_map["model.layers.0.self_attn.k_scale"] = "kv_scales.safetensors";
  weight_map["model.layers.0.self_attn.v_scale"] = "kv_scales.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump();
  const auto write_scales = [&](float k_scale, const Shape& v_shape) {
    float k = k_scale;
    float v[2] = {1.0f, 1.0f};
    const Status written = write_safetensors(
        (dir / "kv_scales.safetensors").string(),
        {NamedTensor{"model.layers.0.self_attn.k_scale", TensorView{.data = &k, .dtype = DType::kF32, .shape = {}}},
         NamedTensor{"model.layers.0.self_attn.v_scale",
                     TensorView{.data = v, .dtype = DType::kF32, .shape = v_shape}}});
    ASSERT_TRUE(written.ok()) << written.error().message;
  };
  const auto logits = [&](const std::string& kv_cache_dtype) {
    return moeserve_cli({"logits", dir.string(), "--device", "cpu", "--kv-cache-dtype", kv_cache_dtype, "--ids",
                         "1,2,3", "--out", (dir / "logits.safetensors").string()});
  };

  write_scales(0.5f, Shape{1});
  const auto refused = logits("fp8");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("carries KV cache scales ('model.layers.0.self_attn.k_scale' = 0.5), which "
                                        "--kv-cache-dtype fp8 does not apply yet"));
  EXPECT_THAT(refused.output, HasSubstr("use --kv-cache-dtype auto"));
  const auto ignored = logits("auto");
  EXPECT_EQ(ignored.exit_code, 0) << ignored.output;

  write_scales(1.0f, Shape{1});
  const auto ones = logits("fp8");
  EXPECT_EQ(ones.exit_code, 0) << ones.output;

  write_scales(1.0f, Shape{2});
  const auto malformed = logits("fp8");
  EXPECT_EQ(malformed.exit_code, 1) << malformed.output;
  EXPECT_THAT(malformed.output, HasSubstr("KV cache scale 'model.layers.0.self_attn.v_scale' must be a float32, "
                                          "bf16 or fp16 scalar (or [1])"));
}

}  // namespace
}  // namespace moeserve
