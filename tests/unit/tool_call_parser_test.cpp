// --tool-call-parser's split of a chat answer (server/tool_call_parser.h): each markup parsed into
// calls, markup that does not parse left as content, and a stream cut anywhere sending the whole
// answer's content and calls.
#include "server/tool_call_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

namespace moeserve {
namespace {

MATCHER_P2(IsCall, name, arguments, "") { return arg.name == name && arg.arguments == arguments; }

using ::testing::ElementsAre;

TEST(ToolCallParser, HermesBlocksWithPythonJsonArguments) {
  const ToolCallSplit split = split_tool_calls(
      ToolCallParser::kHermes,
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\",\"days\":[1,2]}}\n"
      "</tool_call>\n<tool_call>{\"name\":\"now\",\"arguments\":{}}</tool_call>");
  EXPECT_EQ(split.content, "Let me check.\n");
  EXPECT_THAT(split.calls, ElementsAre(IsCall("get_weather", R"({"city": "Paris", "days": [1, 2]})"), IsCall("now", "{}")));
  // The last block cut off before its end tag still counts (vLLM's regex takes it).
  EXPECT_THAT(split_tool_calls(ToolCallParser::kHermes, R"(<tool_call>{"name": "f", "arguments": {"x": "é"}})").calls,
              ElementsAre(IsCall("f", R"({"x": "é"})")));
}

TEST(ToolCallParser, MarkupThatDoesNotParseStaysContent) {
  for (const char* answer : {"<tool_call>{\"name\": \"f\", \"arguments\": {</tool_call>", "<tool_call>[1]</tool_call>",
                             "<tool_call>{\"arguments\": {}}</tool_call>", "no calls at all"}) {
    const ToolCallSplit split = split_tool_calls(ToolCallParser::kHermes, answer);
    EXPECT_EQ(split.content, answer);
    EXPECT_TRUE(split.calls.empty()) << answer;
  }
  EXPECT_TRUE(split_tool_calls(ToolCallParser::kNone, R"(<tool_call>{"name": "f"}</tool_call>)").calls.empty());
}

TEST(ToolCallParser, DeepseekV3AndV31Markup) {
  const ToolCallSplit v3 = split_tool_calls(
      ToolCallParser::kDeepseekV3,
      "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": "
      "\"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n```json\n{}\n```"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  EXPECT_EQ(v3.content, "Sure.");
  EXPECT_THAT(v3.calls, ElementsAre(IsCall("get_weather", R"({"city": "Paris"})"), IsCall("now", "{}")));
  const ToolCallSplit v31 = split_tool_calls(
      ToolCallParser::kDeepseekV31,
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜>");
  EXPECT_EQ(v31.content, "");
  EXPECT_THAT(v31.calls, ElementsAre(IsCall("get_weather", R"({"city": "Paris"})")));
  // A call without its end marker (the answer cut off) does not parse.
  const std::string cut = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}";
  EXPECT_EQ(split_tool_calls(ToolCallParser::kDeepseekV31, cut).content, cut);
}

// DeepSeek-V3.2's DSML as its encoder writes calls (tests/fixtures/chat/deepseek_v32_encoding_reference.json)
// decoded as its published decoder does: string="true" values become JSON strings, others stay
// as written, in their order.
TEST(ToolCallParser, DeepseekV32Dsml) {
  const ToolCallSplit split = split_tool_calls(
      ToolCallParser::kDeepseekV32,
      "Checking.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Zürich \"Nord\"</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"units\" string=\"false\">[\"C\", \"F\"]</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls>");
  EXPECT_EQ(split.content, "Checking.\n\n");
  EXPECT_THAT(split.calls, ElementsAre(IsCall("get_weather", R"({"city": "Zürich \"Nord\"", "days": 2, "units": ["C", "F"]})"),
                                       IsCall("now", "{}")));
  // A parameter without its string attribute does not parse: the answer stays content.
  const std::string bad =
      "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\">1</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  EXPECT_EQ(split_tool_calls(ToolCallParser::kDeepseekV32, bad).content, bad);
}

// Qwen3-Coder's XML calls, each value typed by the request's schema as vLLM's qwen3_coder parser
// types it, the arguments written as Python's json.dumps writes them.
TEST(ToolCallParser, Qwen3CoderTypesValuesByTheSchema) {
  const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {
      "name": "search", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer"}, "ratio": {"type": "number"},
        "scale": {"type": "number"}, "exact": {"type": "boolean"}, "filters": {"type": "object"},
        "tags": {"type": "array"}, "count": {"type": "integer"}}}}}])");
  const ToolCallSplit split = split_tool_calls(
      ToolCallParser::kQwen3Coder,
      "Searching.\n<tool_call>\n<function=search>\n<parameter=query>\nmoe kernels\n</parameter>\n"
      "<parameter=limit>\n10\n</parameter>\n<parameter=ratio>\n0.5\n</parameter>\n<parameter=scale>\n2.0\n"
      "</parameter>\n<parameter=exact>\nTrue\n</parameter>\n<parameter=filters>\n{\"lang\": \"C++\"}\n</parameter>\n"
      "<parameter=tags>\n[1, \"a\"]\n</parameter>\n<parameter=count>\nmany\n</parameter>\n<parameter=other>\n"
      "null\n</parameter>\n<parameter=extra>\n42\n</parameter>\n</function>\n</tool_call>",
      tools);
  EXPECT_EQ(split.content, "Searching.\n");
  EXPECT_THAT(split.calls,
              ElementsAre(IsCall("search", R"({"query": "moe kernels", "limit": 10, "ratio": 0.5, "scale": 2, )"
                                           R"("exact": true, "filters": {"lang": "C++"}, "tags": [1, "a"], )"
                                           R"("count": "many", "other": null, "extra": "42"})")));
  // Without the tool in the request every value is a string; closing tags may be cut off.
  EXPECT_THAT(split_tool_calls(ToolCallParser::kQwen3Coder,
                               "<tool_call>\n<function=now>\n<parameter=zone>\nUTC\n<parameter=n>\n3")
                  .calls,
              ElementsAre(IsCall("now", R"({"zone": "UTC", "n": "3"})")));
}

// Kimi K2's sections: the name from functions.NAME:N (or NAME:N), which is also the call's id.
TEST(ToolCallParser, KimiK2Sections) {
  const ToolCallSplit split = split_tool_calls(
      ToolCallParser::kKimiK2,
      "Let me look.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
      "<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|> now:1 "
      "<|tool_call_argument_begin|> {} <|tool_call_end|><|tool_calls_section_end|>");
  EXPECT_EQ(split.content, "Let me look.");
  ASSERT_EQ(split.calls.size(), 2u);
  EXPECT_EQ(split.calls[0].name, "get_weather");
  EXPECT_EQ(split.calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(split.calls[0].id, "functions.get_weather:0");
  EXPECT_EQ(split.calls[1].name, "now");
  EXPECT_EQ(split.calls[1].arguments, "{}");
  EXPECT_EQ(split.calls[1].id, "now:1");
  // An id without its :N index does not parse.
  const std::string bad = "<|tool_calls_section_begin|><|tool_call_begin|>functions.f<|tool_call_argument_begin|>{}"
                          "<|tool_call_end|><|tool_calls_section_end|>";
  EXPECT_EQ(split_tool_calls(ToolCallParser::kKimiK2, bad).content, bad);
}

// llama3_json / llama4_json: an answer that begins with {"name", "parameters"|"arguments"} objects
// (';' between them, <|python_tag|> allowed first) is calls, arguments as Python's json.dumps
// writes them (ASCII-escaped); anything else stays content.
TEST(ToolCallParser, LlamaJsonCallsAtTheStartOfTheAnswer) {
  const ToolCallSplit split = split_tool_calls(
      ToolCallParser::kLlamaJson,
      " \n{\"name\": \"get_weather\", \"parameters\": {\"city\":\"Zürich\",\"days\":[1,2],\"note\":\"a;b}\"}} ; "
      "{\"name\":\"now\",\"arguments\":{}}\n");
  EXPECT_EQ(split.content, "");
  EXPECT_THAT(split.calls,
              ElementsAre(IsCall("get_weather", R"({"city": "Z\u00fcrich", "days": [1, 2], "note": "a;b}"})"),
                          IsCall("now", "{}")));
  EXPECT_THAT(
      split_tool_calls(ToolCallParser::kLlamaJson, R"(<|python_tag|>{"name": "f", "parameters": {"x": 1}})").calls,
      ElementsAre(IsCall("f", R"({"x": 1})")));
  for (const char* answer : {"The answer is {\"name\": \"f\", \"parameters\": {}}", "{\"name\": \"f\"}",
                             "{\"parameters\": {}}", "{\"name\": \"f\", \"parameters\": {}} and then text",
                             "{\"name\": \"f\", \"parameters\": {", "{}", "plain text"}) {
    const ToolCallSplit plain = split_tool_calls(ToolCallParser::kLlamaJson, answer);
    EXPECT_EQ(plain.content, answer);
    EXPECT_TRUE(plain.calls.empty()) << answer;
  }
}

// pythonic / llama4_pythonic: an answer that is a Python list of calls with literal keyword
// arguments (vLLM's ast walk), arguments as json.dumps writes them; anything else stays content.
TEST(ToolCallParser, PythonicCallLists) {
  const std::string answer =
      "[get_weather(city='Zürich', days=[1, 2.5, -3], opts={'unit': \"c\", 7: None}, live=True),\n now()]";
  const ToolCallSplit split = split_tool_calls(ToolCallParser::kPythonic, answer);
  EXPECT_EQ(split.content, "");
  EXPECT_THAT(
      split.calls,
      ElementsAre(IsCall("get_weather",
                         R"({"city": "Zürich", "days": [1, 2.5, -3], "opts": {"unit": "c", "7": null}, "live": true})"),
                  IsCall("now", "{}")));
  // Escapes and triple quotes as Python reads them; llama4_pythonic writes ASCII, as json.dumps.
  EXPECT_THAT(split_tool_calls(ToolCallParser::kLlama4Pythonic,
                               "<|python_start|>[f(a='it\\'s\\n\\u00e9', b=\"\"\"x\"y\"\"\")]<|python_end|>")
                  .calls,
              ElementsAre(IsCall("f", R"({"a": "it's\n\u00e9", "b": "x\"y"})")));
  for (const char* plain : {" [f(a=1)]", "[f(1)]", "[f(a=1)] and more", "[f(a=g())]", "[f(a=1)", "[]", "[1, 2]",
                            "Sure: [f(a=1)]", "[f(a=(1, 2))]", "[f(a=99999999999999999999)]", "[f(a='open)]"}) {
    const ToolCallSplit kept = split_tool_calls(ToolCallParser::kPythonic, plain);
    EXPECT_EQ(kept.content, plain);
    EXPECT_TRUE(kept.calls.empty()) << plain;
  }
  // Arbitrary answers of the literal syntax's characters, nested deep: a split or the whole answer
  // as content, never a crash (the reader stops past 64 levels).
  std::mt19937 random(20261207);
  const std::string alphabet = "[](){}'\",=:-.0123456789eaf_TrueNon \\\n";
  for (int round = 0; round < 3000; ++round) {
    std::string text = round % 2 ? "[f(a=" : "[";
    const int length = 1 + static_cast<int>(random() % 40);
    for (int i = 0; i < length; ++i) text += alphabet[random() % alphabet.size()];
    if (round % 100 == 0) text = "[f(a=" + std::string(5000, '[') + std::string(5000, ']') + ")]";
    for (ToolCallParser parser : {ToolCallParser::kPythonic, ToolCallParser::kLlama4Pythonic}) {
      const ToolCallSplit split = split_tool_calls(parser, text);
      EXPECT_TRUE(split.calls.empty() ? split.content == text : split.content.empty()) << text;
    }
  }
}

TEST(ToolCallParser, EveryStreamCutSendsTheWholeAnswersSplit) {
  const std::vector<std::pair<ToolCallParser, std::string>> cases = {
      {ToolCallParser::kHermes, "Hi <tool_c <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call> tail"},
      {ToolCallParser::kHermes, "text ending in a partial <tool_ca"},
      {ToolCallParser::kHermes, "<tool_call>not json</tool_call>"},
      {ToolCallParser::kDeepseekV31,
       "ok<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>"},
      {ToolCallParser::kQwen3Coder,
       "x <tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>"},
      {ToolCallParser::kKimiK2,
       "a<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}<|tool_call_end|>"
       "<|tool_calls_section_end|>"},
      {ToolCallParser::kDeepseekV32,
       "ok\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"false\">1"
       "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>"},
      {ToolCallParser::kLlamaJson,
       "  {\"name\": \"f\", \"parameters\": {\"a\": 1}}; {\"name\": \"g\", \"arguments\": {}}"},
      {ToolCallParser::kLlamaJson, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}"},
      {ToolCallParser::kLlamaJson, "<|python is not a tag {\"name\": \"f\", \"parameters\": {}}"},
      {ToolCallParser::kLlamaJson, "\n\nplain answer {\"name\": \"f\", \"parameters\": {}}"},
      {ToolCallParser::kLlamaJson, "{\"name\": \"f\", \"parameters\": {}} trailing"},
      {ToolCallParser::kLlamaJson, "   "},
      {ToolCallParser::kPythonic, "[f(a='x, y', b=[1]), g()]"},
      {ToolCallParser::kPythonic, "I will call [f(a=1)]"},
      {ToolCallParser::kLlama4Pythonic, "<|python_start|>[f(a={'k': 'v'})]<|python_end|>"},
      {ToolCallParser::kLlama4Pythonic, "<|python is not it"},
  };
  for (const auto& [parser, answer] : cases) {
    const ToolCallSplit whole = split_tool_calls(parser, answer);
    for (size_t at = 0; at <= answer.size(); ++at) {
      ToolCallStream stream(parser);
      std::string content = stream.push(answer.substr(0, at), false);
      content += stream.push(answer.substr(at), true);
      EXPECT_EQ(content, whole.content) << answer << " cut at " << at;
      ASSERT_EQ(stream.calls().size(), whole.calls.size()) << answer << " cut at " << at;
      for (size_t i = 0; i < whole.calls.size(); ++i) {
        EXPECT_EQ(stream.calls()[i].name, whole.calls[i].name);
        EXPECT_EQ(stream.calls()[i].arguments, whole.calls[i].arguments);
      }
    }
  }
}

TEST(ToolCallParser, NamesAsVllm) {
  EXPECT_EQ(parse_tool_call_parser("hermes").value(), ToolCallParser::kHermes);
  EXPECT_EQ(parse_tool_call_parser("deepseek_v3").value(), ToolCallParser::kDeepseekV3);
  EXPECT_EQ(parse_tool_call_parser("deepseek_v31").value(), ToolCallParser::kDeepseekV31);
  EXPECT_EQ(parse_tool_call_parser("deepseek_v32").value(), ToolCallParser::kDeepseekV32);
  EXPECT_EQ(parse_tool_call_parser("kimi_k2").value(), ToolCallParser::kKimiK2);
  EXPECT_EQ(parse_tool_call_parser("qwen3_coder").value(), ToolCallParser::kQwen3Coder);
  EXPECT_EQ(parse_tool_call_parser("openai").value(), ToolCallParser::kOpenAi);
  EXPECT_EQ(parse_tool_call_parser("llama3_json").value(), ToolCallParser::kLlamaJson);
  EXPECT_EQ(parse_tool_call_parser("llama4_json").value(), ToolCallParser::kLlamaJson);
  EXPECT_EQ(parse_tool_call_parser("pythonic").value(), ToolCallParser::kPythonic);
  EXPECT_EQ(parse_tool_call_parser("llama4_pythonic").value(), ToolCallParser::kLlama4Pythonic);
  EXPECT_THAT(parse_tool_call_parser("mistral").error().message,
              ::testing::HasSubstr("supported: hermes, qwen3_coder, deepseek_v3, deepseek_v31, deepseek_v32, kimi_k2, "
                                   "llama3_json, llama4_json, pythonic, llama4_pythonic, openai"));
}

}  // namespace
}  // namespace moeserve
