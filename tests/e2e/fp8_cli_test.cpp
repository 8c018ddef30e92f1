// FP8 as a user drives it (issue 21): an fp8 checkpoint through `moeserve logits` equals
// transformers, `-q fp8` and `--kv-cache-dtype fp8` run `generate` on the demo model, and the
// formats moeserve does not run are refused by name with a non-zero exit, never a crash.
#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
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

}  // namespace
}  // namespace moeserve
