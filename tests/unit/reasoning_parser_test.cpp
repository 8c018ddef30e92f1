// --reasoning-parser's split of a chat answer (server/reasoning_parser.h): each parser's rule on
// whole answers, and every way of cutting an answer into stream pieces (markers split across
// pieces included) giving exactly the whole answer's split.
#include "server/reasoning_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using Delta = ReasoningSplitter::Delta;

Delta whole(ReasoningParser parser, bool thinking, std::string_view prompt, std::string_view answer) {
  return ReasoningSplitter(parser, thinking, prompt).push(answer, true);
}

void expect_split(const Delta& got, const std::string& reasoning, const std::string& content) {
  EXPECT_EQ(got.reasoning, reasoning);
  EXPECT_EQ(got.content, content);
}

TEST(ReasoningParser, DeepseekR1ReasonsUntilTheEndMarker) {
  const auto r1 = [](std::string_view answer) { return whole(ReasoningParser::kDeepseekR1, false, "<｜Assistant｜><think>\n", answer); };
  expect_split(r1("9.8 is larger.</think>\n\n9.8"), "9.8 is larger.", "\n\n9.8");
  expect_split(r1("<think>a</think>b"), "a", "b");  // an opening marker in the answer is dropped
  expect_split(r1("still thinking"), "still thinking", "");  // cut off before </think>: all reasoning
  expect_split(r1("</think>"), "", "");
  expect_split(r1("a</think>b</think>c"), "a", "b</think>c");  // the first end marker ends it
}

TEST(ReasoningParser, Qwen3ReasonsOnlyInsideAThinkBlock) {
  const auto qwen3 = [](std::string_view prompt, std::string_view answer) {
    return whole(ReasoningParser::kQwen3, false, prompt, answer);
  };
  const std::string_view open = "<|im_start|>assistant\n";
  expect_split(qwen3(open, "<think>\nr\n</think>\n\nanswer"), "\nr\n", "\n\nanswer");
  expect_split(qwen3(open, "plain answer"), "", "plain answer");  // enable_thinking=False
  expect_split(qwen3(open, "a </think> b"), "", "a </think> b");  // no block opened
  expect_split(qwen3(open, "<thin"), "", "<thin");
  // Thinking-only templates open the block in the prompt.
  expect_split(qwen3("<|im_start|>assistant\n<think>\n", "r</think>c"), "r", "c");
}

TEST(ReasoningParser, DeepseekV3ThinksOnlyWhenAsked) {
  expect_split(whole(ReasoningParser::kDeepseekV3, true, "<｜Assistant｜><think>", "r</think>c"), "r", "c");
  expect_split(whole(ReasoningParser::kDeepseekV3, false, "<｜Assistant｜></think>", "r</think>c"), "", "r</think>c");
  expect_split(whole(ReasoningParser::kNone, true, "", "<think>r</think>c"), "", "<think>r</think>c");
}

TEST(ReasoningParser, EveryStreamCutGivesTheWholeAnswersSplit) {
  struct Case {
    ReasoningParser parser;
    bool thinking;
    std::string prompt, answer;
  };
  const std::vector<Case> cases = {
      {ReasoningParser::kDeepseekR1, false, "", "<think>x</th</think>y</think>"},
      {ReasoningParser::kDeepseekR1, false, "", "abc</think"},
      {ReasoningParser::kQwen3, false, "", "<think>r<</think>\n<c"},
      {ReasoningParser::kQwen3, false, "", "<thinking> is not the marker"},
      {ReasoningParser::kQwen3, false, "<think>", "r</think>c"},
      {ReasoningParser::kDeepseekV3, true, "", "think</think>ok"},
  };
  for (const Case& c : cases) {
    const Delta expected = whole(c.parser, c.thinking, c.prompt, c.answer);
    // Pieces of 1, 2, 3 and 5 bytes, and the answer cut once at every position.
    std::vector<std::vector<std::string>> cuts;
    for (size_t size : {1, 2, 3, 5}) {
      std::vector<std::string> pieces;
      for (size_t at = 0; at < c.answer.size(); at += size) pieces.push_back(c.answer.substr(at, size));
      cuts.push_back(pieces);
    }
    for (size_t at = 0; at <= c.answer.size(); ++at) cuts.push_back({c.answer.substr(0, at), c.answer.substr(at)});
    for (const std::vector<std::string>& pieces : cuts) {
      ReasoningSplitter splitter(c.parser, c.thinking, c.prompt);
      Delta streamed;
      for (size_t i = 0; i < pieces.size(); ++i) {
        const Delta delta = splitter.push(pieces[i], i + 1 == pieces.size());
        streamed.reasoning += delta.reasoning;
        streamed.content += delta.content;
      }
      EXPECT_EQ(streamed.reasoning, expected.reasoning) << c.answer << " in " << pieces.size() << " pieces";
      EXPECT_EQ(streamed.content, expected.content) << c.answer << " in " << pieces.size() << " pieces";
    }
  }
}

TEST(ReasoningParser, NamesAsVllm) {
  EXPECT_EQ(parse_reasoning_parser("deepseek_r1").value(), ReasoningParser::kDeepseekR1);
  EXPECT_EQ(parse_reasoning_parser("qwen3").value(), ReasoningParser::kQwen3);
  EXPECT_EQ(parse_reasoning_parser("deepseek_v3").value(), ReasoningParser::kDeepseekV3);
  EXPECT_EQ(parse_reasoning_parser("openai_gptoss").value(), ReasoningParser::kOpenAiGptOss);
  auto unknown = parse_reasoning_parser("granite");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, ::testing::HasSubstr("supported: deepseek_r1, qwen3, deepseek_v3, openai_gptoss"));
}

}  // namespace
}  // namespace moeserve
