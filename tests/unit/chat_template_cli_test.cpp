// `moeserve chat-template` end to end: with --json, every transformers
// rendering of tokenizer_reference.json (Qwen3 with tools/thinking,
// DeepSeek-V3, the bundled KJV model's Mixtral-Instruct template) comes out
// with exactly its prompt and its ids (the prompt encoded without added special
// tokens, as apply_chat_template(tokenize=True)); --var passes Qwen3's
// enable_thinking; a refused conversation exits non-zero with the template's
// message.
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"

namespace {

using moeserve::testing::run_moeserve;

const std::string kModels = MOESERVE_MODELS_DIR;
const std::string kFixtures = MOESERVE_TEST_DATA_DIR;

TEST(ChatTemplateCli, RendersTheModelsTemplateAsJson) {
  auto result = run_moeserve(
      {"chat-template", kModels + "/kjv-mixtral-tiny", "--messages",
       R"([{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}])",
       "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["prompt"], "<s>[INST] ping [/INST]pong</s>");
  // <s> [INST] ▁ping ▁[ / INST ] pong </s>: the template's BOS, no second one
  // added.
  ASSERT_TRUE(json["ids"].is_array());
  EXPECT_EQ(json["ids"].front(), 1);
  EXPECT_EQ(json["ids"].back(), 2);
}

// Every rendering of tokenizer_reference.json, through the CLI: prompt and ids
// exactly.
TEST(ChatTemplateCli, JsonPromptAndIdsMatchTransformers) {
  const auto reference = nlohmann::ordered_json::parse(
      std::ifstream(kFixtures + "/tokenizer_reference.json"));
  int checked = 0;
  for (const auto &[name, entry] : reference.items()) {
    const std::string dir = entry["tokenizer_dir"].get<std::string>();
    const std::string model_dir = dir.rfind("models/", 0) == 0
                                      ? kModels + dir.substr(6)
                                      : kFixtures + "/" + dir;
    for (const auto &chat_case : entry["chat"]) {
      if (chat_case.contains("error"))
        continue;
      const auto &conversation = chat_case["conversation"];
      nlohmann::ordered_json extra = nlohmann::ordered_json::object();
      for (const auto &[key, value] : conversation.items()) {
        if (key != "messages" && key != "add_generation_prompt")
          extra[key] = value;
      }
      std::vector<std::string> args{
          "chat-template", model_dir,
          "--messages",    conversation["messages"].dump(),
          "--extra",       extra.dump(),
          "--json"};
      if (conversation.value("add_generation_prompt", false))
        args.push_back("--add-generation-prompt");
      auto result = run_moeserve(args);
      ASSERT_EQ(result.exit_code, 0) << name << ": " << result.output;
      const auto json = nlohmann::json::parse(result.out);
      EXPECT_EQ(json["prompt"], chat_case["rendered"])
          << name << " " << conversation.dump();
      EXPECT_EQ(json["ids"], chat_case["ids"])
          << name << " " << conversation.dump();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 11);
}

TEST(ChatTemplateCli, PassesVariables) {
  auto result = run_moeserve(
      {"chat-template", kFixtures + "/tokenizers/qwen3", "--messages",
       R"([{"role": "user", "content": "2+2?"}])", "--add-generation-prompt",
       "--var", "enable_thinking=false"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.out, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>"
                        "assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateCli, RefusedConversationExitsNonZeroWithMessage) {
  auto result = run_moeserve(
      {"chat-template", kModels + "/kjv-mixtral-tiny", "--messages",
       R"([{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}])",
       "--json"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("Conversation roles must alternate"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.out, "");
}

TEST(ChatTemplateCli, BadInputIsAClearError) {
  auto result = run_moeserve({"chat-template", kModels + "/kjv-mixtral-tiny",
                              "--messages", "not json"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("--messages is not valid JSON"), std::string::npos)
      << result.output;
  auto no_tokenizer = run_moeserve(
      {"chat-template", "/nonexistent", "--messages", "[]", "--json"});
  EXPECT_NE(no_tokenizer.exit_code, 0);
  EXPECT_FALSE(no_tokenizer.err.empty());
}

} // namespace
