// DeepSeek-V3.2's chat prompts (tokenizer/chat/deepseek_v32_encoding.h) against the encoder
// published with the model, case by case (tests/fixtures/chat/deepseek_v32_encoding_reference.json,
// written by tests/fixtures/tools/make_deepseek_v32_encoding_reference.py): chat and thinking mode,
// earlier reasoning dropped, tools, DSML tool calls and their results, developer messages, and the
// messages the published encoder refuses.
#include "tokenizer/chat/deepseek_v32_encoding.h"

#include <fstream>

#include <gtest/gtest.h>

namespace moeserve::chat {
namespace {

using Json = nlohmann::ordered_json;

TEST(DeepseekV32Encoding, EqualsThePublishedEncoder) {
  std::ifstream file(MOESERVE_TEST_DATA_DIR "/chat/deepseek_v32_encoding_reference.json");
  ASSERT_TRUE(file) << "missing reference";
  const Json reference = Json::parse(file);
  int prompts = 0, errors = 0;
  for (const Json& c : reference["cases"]) {
    const std::string name = c["name"];
    const Json& kwargs = c["chat_template_kwargs"];
    const bool thinking = kwargs.value("thinking", false) || kwargs.value("enable_thinking", false);
    const Result<std::string> prompt = encode_deepseek_v32(c["messages"], c.value("tools", Json()), thinking);
    if (c.value("error", false)) {
      EXPECT_FALSE(prompt.ok()) << name << ": " << *prompt;
      if (!prompt.ok()) ++errors;
      continue;
    }
    ASSERT_TRUE(prompt.ok()) << name << ": " << prompt.error().message;
    EXPECT_EQ(*prompt, c["prompt"].get<std::string>()) << name;
    ++prompts;
  }
  EXPECT_EQ(prompts, 10);
  EXPECT_EQ(errors, 4);
}

// Tool-call arguments as the server passes them (the JSON string already decoded to its object)
// give the same prompt; arguments that are not an object are refused.
TEST(DeepseekV32Encoding, ArgumentsAsObjectsAndBadArguments) {
  Json messages = Json::parse(R"([
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": [1, 2]}"}}]},
    {"role": "tool", "content": "sunny"}])");
  const Result<std::string> as_string = encode_deepseek_v32(messages, Json(), false);
  ASSERT_TRUE(as_string.ok()) << as_string.error().message;
  EXPECT_NE(as_string->find("<｜DSML｜parameter name=\"days\" string=\"false\">[1, 2]</｜DSML｜parameter>"),
            std::string::npos)
      << *as_string;
  Json& function = messages[1]["tool_calls"][0]["function"];
  function["arguments"] = Json::parse(function["arguments"].get<std::string>());
  const Result<std::string> as_object = encode_deepseek_v32(messages, Json(), false);
  ASSERT_TRUE(as_object.ok()) << as_object.error().message;
  EXPECT_EQ(*as_object, *as_string);
  function["arguments"] = "[1, 2]";
  const Result<std::string> bad = encode_deepseek_v32(messages, Json(), false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("must be a JSON object"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace moeserve::chat
