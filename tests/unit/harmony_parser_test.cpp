// GPT-OSS's harmony answers split into reasoning, content and tool calls
// (server/harmony_parser.h), on answers written as gpt-oss writes them: the analysis channel is
// reasoning, final and preambles are content, to=functions.NAME messages are calls, text that is
// not harmony is content, and a stream cut anywhere gives the whole answer's split.
#include "server/harmony_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

MATCHER_P2(IsCall, name, arguments, "") { return arg.name == name && arg.arguments == arguments; }

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct Split {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
};

Split whole(std::string_view answer, bool tool_calls = true) {
  HarmonySplitter splitter(tool_calls);
  HarmonySplitter::Delta delta = splitter.push(answer, true);
  return Split{delta.reasoning, delta.content, splitter.calls()};
}

TEST(HarmonyParser, AnalysisIsReasoningAndFinalIsContent) {
  const Split split = whole(
      "<|channel|>analysis<|message|>User asks for the capital of France. Simple.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>The capital of France is Paris.");
  EXPECT_EQ(split.reasoning, "User asks for the capital of France. Simple.");
  EXPECT_EQ(split.content, "The capital of France is Paris.");
  EXPECT_THAT(split.calls, IsEmpty());
  // <|return|> (when the stop token is not cut off) ends the answer.
  EXPECT_EQ(whole("<|channel|>final<|message|>Paris.<|return|>").content, "Paris.");
}

TEST(HarmonyParser, FunctionMessagesAreToolCallsWithPythonJsonArguments) {
  const Split split = whole(
      "<|channel|>analysis<|message|>Need to use function get_weather.<|end|>"
      "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
      "<|message|>{\"location\":\"San Francisco\",\"days\":[1,2]}<|call|>");
  EXPECT_EQ(split.reasoning, "Need to use function get_weather.");
  EXPECT_EQ(split.content, "");
  EXPECT_THAT(split.calls, ElementsAre(IsCall("get_weather", R"({"location": "San Francisco", "days": [1, 2]})")));
  // The recipient in the role part of the header, the content type as a bare word, and two calls.
  const Split two = whole(
      " to=functions.now<|channel|>commentary json<|message|>{}<|call|>"
      "<|start|>assistant to=functions.lookup<|channel|>commentary<|message|>{\"q\": \"é\"}");
  EXPECT_THAT(two.calls, ElementsAre(IsCall("now", "{}"), IsCall("lookup", R"({"q": "é"})")));
  // Arguments that are not JSON are passed on as written.
  EXPECT_THAT(whole("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{oops").calls,
              ElementsAre(IsCall("f", "{oops")));
  // Without tool calls parsed, a call's text is content (as vLLM's gpt-oss answer without a parser).
  const Split unparsed = whole("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\":1}", false);
  EXPECT_EQ(unparsed.content, "{\"a\":1}");
  EXPECT_THAT(unparsed.calls, IsEmpty());
}

TEST(HarmonyParser, PreamblesAreContentAndBuiltinToolsReasoning) {
  const Split split = whole(
      "<|channel|>analysis<|message|>First.<|end|><|start|>assistant<|channel|>commentary<|message|>Checking the "
      "weather.<|end|><|start|>assistant<|channel|>analysis to=browser.search code<|message|>{\"query\": \"x\"}"
      "<|end|><|start|>assistant<|channel|>final<|message|>Sunny.");
  EXPECT_EQ(split.reasoning, "First.\n{\"query\": \"x\"}");
  EXPECT_EQ(split.content, "Checking the weather.Sunny.");
  EXPECT_THAT(split.calls, IsEmpty());
}

TEST(HarmonyParser, TextThatIsNotHarmonyIsContent) {
  EXPECT_EQ(whole("Hello <|end|> world").content, "Hello <|end|> world");
  EXPECT_EQ(whole("").content, "");
  // A header the end of the answer cut off (max_tokens) carries no text.
  const Split cut = whole("<|channel|>analysis<|message|>Hm.<|end|><|start|>assistant<|chan");
  EXPECT_EQ(cut.reasoning, "Hm.");
  EXPECT_EQ(cut.content, "");
  // After the messages, text that does not start a header is content.
  const Split tail = whole("<|channel|>final<|message|>A<|end|>B");
  EXPECT_EQ(tail.content, "AB");
}

TEST(HarmonyParser, EveryStreamCutSendsTheWholeAnswersSplit) {
  const std::vector<std::string> answers = {
      "<|channel|>analysis<|message|>Think <|en d.<|end|><|start|>assistant<|channel|>final<|message|>Answer <| here",
      "<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather "
      "<|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>",
      "<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>analysis<|message|>B<|end|>"
      "<|start|>assistant<|channel|>final<|message|>C<|return|>",
      "plain <|channel|> text",
  };
  for (const std::string& answer : answers) {
    const Split expected = whole(answer);
    for (size_t at = 0; at <= answer.size(); ++at) {
      HarmonySplitter stream(true);
      HarmonySplitter::Delta first = stream.push(answer.substr(0, at), false);
      HarmonySplitter::Delta rest = stream.push(answer.substr(at), true);
      EXPECT_EQ(first.reasoning + rest.reasoning, expected.reasoning) << answer << " cut at " << at;
      EXPECT_EQ(first.content + rest.content, expected.content) << answer << " cut at " << at;
      ASSERT_EQ(stream.calls().size(), expected.calls.size()) << answer << " cut at " << at;
      for (size_t i = 0; i < expected.calls.size(); ++i) {
        EXPECT_EQ(stream.calls()[i].name, expected.calls[i].name);
        EXPECT_EQ(stream.calls()[i].arguments, expected.calls[i].arguments);
      }
    }
    // One byte at a time: nothing of a marker ever leaks into the text.
    HarmonySplitter bytes(true);
    std::string reasoning, content;
    for (size_t at = 0; at < answer.size(); ++at) {
      HarmonySplitter::Delta delta = bytes.push(answer.substr(at, 1), at + 1 == answer.size());
      reasoning += delta.reasoning;
      content += delta.content;
    }
    EXPECT_EQ(reasoning, expected.reasoning) << answer;
    EXPECT_EQ(content, expected.content) << answer;
  }
  EXPECT_EQ(whole(answers[0]).reasoning, "Think <|en d.");
  EXPECT_EQ(whole(answers[0]).content, "Answer <| here");
}

}  // namespace
}  // namespace moeserve
