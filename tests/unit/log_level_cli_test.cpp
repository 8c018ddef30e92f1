// --log-level and VLLM_LOGGING_LEVEL through the built binary: every command that loads a model
// takes the flag and refuses an unknown level, as it refuses an unknown VLLM_LOGGING_LEVEL (with
// the variable's name); the flag wins over the variable, names are case-insensitive, and the
// level really filters: `generate -tp 2` logs its parallel layout at info, which warning hides.
#include <gtest/gtest.h>

#include "cli_runner.h"

namespace moeserve::testing {
namespace {

const std::string kModel = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
constexpr const char* kLayoutLine = "[info] parallel layout: TP 2";

CommandResult generate(std::vector<std::string> extra, const std::string& env_level = "") {
  std::vector<std::string> args{"generate", kModel, "--prompt", "In the", "--max-tokens", "2", "-tp", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  CommandOptions options{.timeout_s = 120};
  options.env.emplace_back("VLLM_LOGGING_LEVEL", env_level);
  return run_moeserve(args, options);
}

TEST(LogLevelCli, EveryModelCommandTakesTheFlagAndTheVariable) {
  const std::vector<std::vector<std::string>> commands = {
      {"serve", kModel}, {"generate", kModel}, {"logits", kModel, "--ids", "1", "--out", ::testing::TempDir() + "/log_level_logits.safetensors"}, {"bench", "latency", kModel},
      {"bench", "throughput", kModel}};
  for (const auto& command : commands) {
    std::vector<std::string> bad_flag = command;
    bad_flag.insert(bad_flag.end(), {"--log-level", "loud"});
    CommandResult result = run_moeserve(bad_flag, {.timeout_s = 60});
    EXPECT_NE(result.exit_code, 0) << command[0];
    EXPECT_NE(result.err.find("--log-level: must be debug, info, warning, error or critical, got loud"),
              std::string::npos)
        << result.output;
    result = run_moeserve(command, {.env = {{"VLLM_LOGGING_LEVEL", "loud"}}, .timeout_s = 60});
    EXPECT_EQ(result.exit_code, 1) << command[0] << ": " << result.output;
    EXPECT_NE(result.err.find("moeserve: error: VLLM_LOGGING_LEVEL=loud is not a log level: use debug, info, "
                              "warning, error or critical (or --log-level)"),
              std::string::npos)
        << result.output;
  }
}

TEST(LogLevelCli, FlagThenVariableThenInfo) {
  // Default (the variable empty counts as unset): info.
  CommandResult result = generate({});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(kLayoutLine), std::string::npos) << result.output;
  EXPECT_NE(result.out.find("In the"), std::string::npos) << result.output;
  for (const std::string level : {"warning", "WARNING", "Error", "critical", "warn"}) {
    result = generate({"--log-level", level});
    ASSERT_EQ(result.exit_code, 0) << level << ": " << result.output;
    EXPECT_EQ(result.output.find("parallel layout"), std::string::npos) << level << ": " << result.output;
    EXPECT_NE(result.out.find("In the"), std::string::npos) << result.output;
    result = generate({}, level);
    ASSERT_EQ(result.exit_code, 0) << level << ": " << result.output;
    EXPECT_EQ(result.output.find("parallel layout"), std::string::npos) << level << ": " << result.output;
  }
  for (const std::string level : {"DEBUG", "info"}) {
    result = generate({}, level);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find(kLayoutLine), std::string::npos) << level << ": " << result.output;
  }
  // The flag wins over the variable, both ways (and over a variable that is not a level).
  result = generate({"--log-level", "info"}, "ERROR");
  EXPECT_NE(result.output.find(kLayoutLine), std::string::npos) << result.output;
  result = generate({"--log-level", "debug"}, "loud");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(kLayoutLine), std::string::npos) << result.output;
  result = generate({"--log-level", "error"}, "DEBUG");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("parallel layout"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace moeserve::testing
