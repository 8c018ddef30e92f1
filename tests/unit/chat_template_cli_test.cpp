// `moeserve chat-template` end to end: the bundled KJV model's Mixtral-Instruct template renders
// the fixture conversation exactly, --var passes Qwen3's enable_thinking, and a refused
// conversation exits non-zero with the template's message.
#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult run(const std::string& arguments) {
  std::string command = std::string(MOESERVE_BINARY) + " " + arguments + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t read = 0;
  while ((read = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), read);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

const std::string kModels = MOESERVE_MODELS_DIR;
const std::string kFixtures = MOESERVE_TEST_DATA_DIR;

TEST(ChatTemplateCli, RendersTheModelsTemplateAsJson) {
  auto result = run("chat-template " + kModels + "/kjv-mixtral-tiny --messages "
                    "'[{\"role\": \"user\", \"content\": \"ping\"}, {\"role\": \"assistant\", \"content\": \"pong\"}]' --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto json = nlohmann::json::parse(result.output);
  EXPECT_EQ(json["prompt"], "<s>[INST] ping [/INST]pong</s>");
}

TEST(ChatTemplateCli, PassesVariables) {
  auto result = run("chat-template " + kFixtures + "/tokenizers/qwen3 --messages '[{\"role\": \"user\", \"content\": \"2+2?\"}]'"
                    " --add-generation-prompt --var enable_thinking=false");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateCli, RefusedConversationExitsNonZeroWithMessage) {
  auto result = run("chat-template " + kModels + "/kjv-mixtral-tiny --messages "
                    "'[{\"role\": \"system\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"hi\"}]'");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("Conversation roles must alternate"), std::string::npos) << result.output;
}

TEST(ChatTemplateCli, BadInputIsAClearError) {
  auto result = run("chat-template " + kModels + "/kjv-mixtral-tiny --messages 'not json'");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("--messages is not valid JSON"), std::string::npos) << result.output;
}

}  // namespace
