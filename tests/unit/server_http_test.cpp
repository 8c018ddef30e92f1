// The HTTP server end to end over a fake engine on loopback: every route, completions and chat
// (non-streaming and SSE streaming, whose concatenated text must equal the non-streamed text),
// n > 1 fan-out with per-choice ids and seeds, prompts tokenized as vLLM does (chat: template
// then no extra special tokens), logprobs shapes, keep-alive, and stop() with work in flight.
#include <csignal>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tokenizer/chat/chat_template.h"
#include "unit/llama4_tokenizer.h"
#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

using nlohmann::json;

// What the engine's incremental detokenizer yields: decode(prompt + output) - decode(prompt), so a
// generated word's leading space survives.
std::string expected_text(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt, int count) {
  std::vector<int32_t> all = prompt;
  for (int32_t id : FakeEngineClient::expected_tokens(prompt, count)) all.push_back(id);
  const std::string prefix = tokenizer.decode(prompt, true);
  const std::string full = tokenizer.decode(all, true);
  EXPECT_TRUE(full.starts_with(prefix));
  return full.substr(prefix.size());
}

std::string streamed_text(const std::string& body, const char* field) {
  std::string text;
  for (const std::string& payload : sse_payloads(body)) {
    if (payload == "[DONE]") break;
    const json chunk = json::parse(payload);
    for (const json& choice : chunk["choices"]) {
      if (std::string(field) == "text") {
        text += choice["text"].get<std::string>();
      } else if (choice["delta"].contains("content")) {
        text += choice["delta"]["content"].get<std::string>();
      }
    }
  }
  return text;
}

TEST(ServerHttp, HealthVersionModelsAndMetrics) {
  ServerHarness harness;
  HttpResult health = harness.get("/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "");
  EXPECT_EQ(harness.get("/version").json(), json({{"version", MOESERVE_VERSION}}));
  json models = harness.get("/v1/models").json();
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][1]["id"], "tiny-alias");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["max_model_len"], 128);
  harness.registry.counter("vllm:prompt_tokens", "Prompt tokens.", {{"model_name", "tiny"}}).inc(3);
  HttpResult metrics = harness.get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics.body.find("vllm:prompt_tokens_total{model_name=\"tiny\"} 3.0\n"), std::string::npos);
}

TEST(ServerHttp, CompletionNonStreaming) {
  ServerHarness harness;
  auto tokenizer = harness.engine.tokenizer();
  HttpResult result = harness.post("/v1/completions", {{"model", "tiny"}, {"prompt", "In the beginning God"},
                                                       {"max_tokens", 7}, {"temperature", 0}});
  ASSERT_EQ(result.status, 200) << result.body;
  json body = result.json();
  const std::vector<int32_t> prompt = tokenizer->encode("In the beginning God", true).value();
  EXPECT_EQ(prompt.front(), tokenizer->bos_token_id().value());
  ASSERT_EQ(harness.engine.submitted().size(), 1u);
  const GenerationRequest sent = harness.engine.submitted()[0];
  EXPECT_EQ(sent.prompt_ids, prompt);
  EXPECT_EQ(sent.stop.max_tokens, 7);
  EXPECT_EQ(sent.sampling.temperature, 0.0f);
  EXPECT_EQ(sent.request_id, body["id"].get<std::string>() + "-0");
  EXPECT_TRUE(body["id"].get<std::string>().starts_with("cmpl-"));
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["model"], "tiny");
  EXPECT_TRUE(body["created"].is_number_integer());
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["index"], 0);
  EXPECT_EQ(body["choices"][0]["text"], expected_text(*tokenizer, prompt, 7));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(body["choices"][0]["stop_reason"].is_null());
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(body["usage"]["completion_tokens"], 7);
  EXPECT_EQ(body["usage"]["total_tokens"], prompt.size() + 7);
}

TEST(ServerHttp, CompletionDefaultsFollowVllm) {
  ServerHarness harness;
  ASSERT_EQ(harness.post("/v1/completions", {{"prompt", "And God said"}}).status, 200);
  const GenerationRequest sent = harness.engine.submitted().at(0);
  EXPECT_EQ(sent.stop.max_tokens, 16);  // the completions API's default
  EXPECT_EQ(sent.sampling.temperature, 1.0f);
  EXPECT_EQ(sent.sampling.top_p, 1.0f);
  EXPECT_EQ(sent.sampling.top_k, 0);
  EXPECT_EQ(sent.sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(sent.sampling.seed.has_value());
  EXPECT_TRUE(sent.stop.skip_special_tokens);
  EXPECT_FALSE(sent.logprobs.has_value());
}

TEST(ServerHttp, CompletionStreamingEqualsNonStreaming) {
  ServerHarness harness;
  const json request = {{"prompt", "Let there be light"}, {"max_tokens", 12}};
  HttpResult plain = harness.post("/v1/completions", request);
  json streaming_request = request;
  streaming_request["stream"] = true;
  streaming_request["stream_options"] = {{"include_usage", true}};
  HttpResult stream = harness.post("/v1/completions", streaming_request);
  ASSERT_EQ(stream.status, 200);
  EXPECT_EQ(stream.headers["Content-Type"], "text/event-stream; charset=utf-8");
  EXPECT_EQ(stream.headers["Transfer-Encoding"], "chunked");
  EXPECT_EQ(streamed_text(stream.body, "text"), plain.json()["choices"][0]["text"].get<std::string>());
  std::vector<std::string> payloads = sse_payloads(stream.body);
  ASSERT_GE(payloads.size(), 3u);
  EXPECT_EQ(payloads.back(), "[DONE]");
  EXPECT_TRUE(stream.body.ends_with("data: [DONE]\n\n"));
  json usage_chunk = json::parse(payloads[payloads.size() - 2]);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"], plain.json()["usage"]);
  json last = json::parse(payloads[payloads.size() - 3]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["object"], "text_completion");
  EXPECT_FALSE(json::parse(payloads[0]).contains("usage"));
}

TEST(ServerHttp, CompletionFanOutAndBatchedPrompts) {
  ServerHarness harness;
  HttpResult result = harness.post(
      "/v1/completions", {{"prompt", json::array({"In the beginning", "And the earth"})}, {"n", 2}, {"seed", 41},
                          {"max_tokens", 3}, {"echo", true}});
  ASSERT_EQ(result.status, 200) << result.body;
  json body = result.json();
  ASSERT_EQ(body["choices"].size(), 4u);
  auto submitted = harness.engine.submitted();
  ASSERT_EQ(submitted.size(), 4u);
  const std::string id = body["id"];
  auto tokenizer = harness.engine.tokenizer();
  for (int choice = 0; choice < 4; ++choice) {
    EXPECT_EQ(submitted[choice].request_id, id + "-" + std::to_string(choice));
    EXPECT_EQ(submitted[choice].sampling.seed.value(), 41u + choice % 2);
    const std::string prompt_text = choice < 2 ? "In the beginning" : "And the earth";
    EXPECT_EQ(body["choices"][choice]["index"], choice);
    EXPECT_EQ(body["choices"][choice]["text"],
              prompt_text + expected_text(*tokenizer, tokenizer->encode(prompt_text, true).value(), 3));
  }
  const int prompt_tokens = static_cast<int>(tokenizer->encode("In the beginning", true).value().size() +
                                             tokenizer->encode("And the earth", true).value().size());
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(body["usage"]["completion_tokens"], 12);
}

TEST(ServerHttp, CompletionWithTokenPromptAndVllmExtras) {
  ServerHarness harness;
  HttpResult result = harness.post(
      "/v1/completions", {{"prompt", {1, 560, 278, 6423}}, {"max_tokens", 4}, {"top_k", 5}, {"min_p", 0.1},
                          {"repetition_penalty", 1.2}, {"ignore_eos", true}, {"min_tokens", 2},
                          {"stop", "Lord"}, {"stop_token_ids", {2}}, {"skip_special_tokens", false},
                          {"include_stop_str_in_output", true}, {"presence_penalty", 0.5}, {"frequency_penalty", -0.5}});
  ASSERT_EQ(result.status, 200) << result.body;
  const GenerationRequest sent = harness.engine.submitted().at(0);
  EXPECT_EQ(sent.prompt_ids, (std::vector<int32_t>{1, 560, 278, 6423}));
  EXPECT_EQ(sent.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(sent.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(sent.sampling.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(sent.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(sent.sampling.frequency_penalty, -0.5f);
  EXPECT_TRUE(sent.stop.ignore_eos);
  EXPECT_EQ(sent.stop.min_tokens, 2);
  EXPECT_EQ(sent.stop.stop, std::vector<std::string>{"Lord"});
  EXPECT_EQ(sent.stop.stop_token_ids, std::vector<int32_t>{2});
  EXPECT_FALSE(sent.stop.skip_special_tokens);
  EXPECT_TRUE(sent.stop.include_stop_str_in_output);
}

TEST(ServerHttp, CompletionLogprobsShape) {
  ServerHarness harness;
  HttpResult result = harness.post("/v1/completions", {{"prompt", "God"}, {"max_tokens", 3}, {"logprobs", 2}});
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(harness.engine.submitted().at(0).logprobs, 2);
  json logprobs = result.json()["choices"][0]["logprobs"];
  ASSERT_EQ(logprobs["tokens"].size(), 3u);
  ASSERT_EQ(logprobs["token_logprobs"].size(), 3u);
  ASSERT_EQ(logprobs["top_logprobs"].size(), 3u);
  ASSERT_EQ(logprobs["text_offset"].size(), 3u);
  EXPECT_DOUBLE_EQ(logprobs["token_logprobs"][1].get<double>(), -1.0);
  EXPECT_EQ(logprobs["text_offset"][0], 0);
  EXPECT_EQ(logprobs["text_offset"][1], logprobs["tokens"][0].get<std::string>().size());
  // The chosen token is listed with the top alternatives.
  EXPECT_TRUE(logprobs["top_logprobs"][0].contains(logprobs["tokens"][0].get<std::string>()));
}

TEST(ServerHttp, ChatRendersTemplateAndStreamsTheSameText) {
  ServerHarness harness;
  auto tokenizer = harness.engine.tokenizer();
  const json messages = json::array({{{"role", "user"}, {"content", "Who made the light?"}}});
  HttpResult plain = harness.post("/v1/chat/completions", {{"model", "tiny-alias"}, {"messages", messages}, {"max_tokens", 9}});
  ASSERT_EQ(plain.status, 200) << plain.body;
  // The prompt is the template's rendering tokenized without added special tokens: one BOS.
  auto config = chat::load_chat_template_config(kModelDir).value();
  auto chat_template = chat::ChatTemplate::parse(config.chat_template).value();
  chat::RenderOptions render;
  render.add_generation_prompt = true;
  render.bos_token = tokenizer->bos_token();
  render.eos_token = tokenizer->eos_token();
  const std::string rendered = chat_template.render(messages, render).value();
  const std::vector<int32_t> prompt = tokenizer->encode(rendered, false).value();
  EXPECT_EQ(harness.engine.submitted().at(0).prompt_ids, prompt);
  EXPECT_EQ(prompt[0], tokenizer->bos_token_id().value());
  EXPECT_NE(prompt[1], tokenizer->bos_token_id().value());
  json body = plain.json();
  EXPECT_TRUE(body["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "tiny");  // the first served name is the one reported
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["choices"][0]["message"]["content"], expected_text(*tokenizer, prompt, 9));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());

  HttpResult stream = harness.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 9}, {"stream", true}});
  ASSERT_EQ(stream.status, 200);
  EXPECT_EQ(streamed_text(stream.body, "delta"), body["choices"][0]["message"]["content"].get<std::string>());
  std::vector<std::string> payloads = sse_payloads(stream.body);
  json first = json::parse(payloads.front());
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(json::parse(payloads[payloads.size() - 2])["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(payloads.back(), "[DONE]");
}

// --reasoning-parser deepseek_r1: the fake engine echoes the rendered prompt, which holds a
// "</think>" (several KJV tokens): the answer up to it is `reasoning` (and `reasoning_content`),
// the rest `content`, whole and streamed alike; qwen3 without a <think> block leaves it content.
TEST(ServerHttp, ReasoningParserSplitsTheAnswerWholeAndStreamed) {
  const json messages = json::array({{{"role", "user"}, {"content", "Who made the light?</think> And the dark"}}});
  std::string answer;  // the echo, unsplit
  {
    ServerHarness plain;
    HttpResult result = plain.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 40}});
    ASSERT_EQ(result.status, 200) << result.body;
    answer = result.json()["choices"][0]["message"]["content"].get<std::string>();
  }
  const size_t end = answer.find("</think>");
  ASSERT_NE(end, std::string::npos) << answer;
  ServerOptions options;
  options.reasoning_parser = ReasoningParser::kDeepseekR1;
  ServerHarness harness(options);
  HttpResult whole = harness.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 40}});
  ASSERT_EQ(whole.status, 200) << whole.body;
  const json message = whole.json()["choices"][0]["message"];
  EXPECT_EQ(message["reasoning"], answer.substr(0, end));
  EXPECT_EQ(message["reasoning_content"], answer.substr(0, end));
  EXPECT_EQ(message["content"], answer.substr(end + 8));
  HttpResult stream = harness.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 40}, {"stream", true}});
  ASSERT_EQ(stream.status, 200);
  std::string reasoning;
  for (const std::string& payload : sse_payloads(stream.body)) {
    if (payload == "[DONE]") break;
    const json delta = json::parse(payload)["choices"][0].value("delta", json::object());
    if (delta.contains("reasoning")) {
      EXPECT_EQ(delta["reasoning"], delta["reasoning_content"]);
      reasoning += delta["reasoning"].get<std::string>();
    }
  }
  EXPECT_EQ(reasoning, answer.substr(0, end));
  EXPECT_EQ(streamed_text(stream.body, "delta"), answer.substr(end + 8));

  options.reasoning_parser = ReasoningParser::kQwen3;
  ServerHarness qwen3(options);
  HttpResult content_only = qwen3.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 40}});
  ASSERT_EQ(content_only.status, 200) << content_only.body;
  EXPECT_EQ(content_only.json()["choices"][0]["message"]["content"], answer);
  EXPECT_TRUE(content_only.json()["choices"][0]["message"]["reasoning"].is_null());
}

// --enable-auto-tool-choice --tool-call-parser hermes: the fake engine echoes the rendered prompt,
// whose user message holds a <tool_call> block (max_tokens: one echo of the prompt, so the answer
// holds the block once, whole): a request with tools gets it as tool_calls (finish_reason
// "tool_calls"), the text before it as content, whole and streamed alike, with special tokens
// kept in the text; without tools the answer stays content.
TEST(ServerHttp, ToolCallParserTurnsMarkupIntoToolCalls) {
  const json messages = json::array(
      {{{"role", "user"}, {"content", R"(Weather? <tool_call>{"name": "get_weather", "arguments": {"city":"Paris"}}</tool_call>)"}}});
  const json tools = json::array({{{"type", "function"},
                                   {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}});
  json request = {{"messages", messages}, {"max_tokens", 1}, {"tools", tools}};
  std::string answer;  // the echo, unparsed, special tokens kept
  {
    ServerHarness plain;
    json unparsed = request;
    unparsed["skip_special_tokens"] = false;
    HttpResult probe = plain.post("/v1/chat/completions", unparsed);
    ASSERT_EQ(probe.status, 200) << probe.body;
    request["max_tokens"] = unparsed["max_tokens"] = probe.json()["usage"]["prompt_tokens"];
    HttpResult result = plain.post("/v1/chat/completions", unparsed);
    ASSERT_EQ(result.status, 200) << result.body;
    answer = result.json()["choices"][0]["message"]["content"].get<std::string>();
  }
  const size_t first = answer.find("<tool_call>");
  ASSERT_NE(first, std::string::npos) << answer;
  ASSERT_EQ(answer.find("<tool_call>", first + 1), std::string::npos) << answer;
  ServerOptions options;
  options.tool_call_parser = ToolCallParser::kHermes;
  ServerHarness harness(options);
  HttpResult whole = harness.post("/v1/chat/completions", request);
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_FALSE(harness.engine.submitted().back().stop.skip_special_tokens);
  const json choice = whole.json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], answer.substr(0, first));
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << whole.body;
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_TRUE(call["id"].get<std::string>().starts_with("chatcmpl-tool-"));
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(call["function"]["arguments"], R"({"city": "Paris"})");
  json streamed_request = request;
  streamed_request["stream"] = true;
  HttpResult stream = harness.post("/v1/chat/completions", streamed_request);
  ASSERT_EQ(stream.status, 200);
  EXPECT_EQ(streamed_text(stream.body, "delta"), answer.substr(0, first));
  json streamed_calls = json::array();
  std::string finish;
  for (const std::string& payload : sse_payloads(stream.body)) {
    if (payload == "[DONE]") break;
    const json chunk = json::parse(payload);
    if (chunk["choices"].empty()) continue;
    const json& c = chunk["choices"][0];
    if (c.contains("delta") && c["delta"].contains("tool_calls")) streamed_calls = c["delta"]["tool_calls"];
    if (c.contains("finish_reason") && !c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(streamed_calls.size(), choice["message"]["tool_calls"].size());
  EXPECT_EQ(streamed_calls[0]["index"], 0);
  EXPECT_EQ(streamed_calls[0]["function"], choice["message"]["tool_calls"][0]["function"]);

  json without_tools = request;
  without_tools.erase("tools");
  HttpResult plain = harness.post("/v1/chat/completions", without_tools);
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.json()["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(plain.json()["choices"][0]["message"].contains("tool_calls"));
}

// A GPT-OSS model's directory in the hub layout (tokenizer files and chat_template.jinja; the
// fake engine needs no weights), removed at the end.
struct GptOssDir {
  GptOssDir() : path(std::filesystem::temp_directory_path() / ("moeserve_harmony_" + std::to_string(::getpid()))) {
    const std::filesystem::path fixtures = MOESERVE_TEST_DATA_DIR;
    std::filesystem::create_directories(path);
    std::filesystem::copy_file(fixtures / "tokenizers/gptoss/tokenizer_config.json", path / "tokenizer_config.json");
    std::filesystem::create_symlink(fixtures / "tokenizers/gptoss/tokenizer.json", path / "tokenizer.json");
    std::filesystem::copy_file(fixtures / "chat/openai_gpt_oss.jinja", path / "chat_template.jinja");
    config.architecture = Architecture::kGptOss;
    config.architecture_name = "GptOssForCausalLM";
  }
  ~GptOssDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
  ModelConfig config;
};

// The fields of a streamed chat answer, put together.
struct StreamedChat {
  std::string reasoning, content, finish;
  json tool_calls = json::array();
};
StreamedChat streamed_chat(const std::string& body) {
  StreamedChat out;
  for (const std::string& payload : sse_payloads(body)) {
    if (payload == "[DONE]") break;
    const json chunk = json::parse(payload);
    if (chunk["choices"].empty()) continue;
    const json& choice = chunk["choices"][0];
    const json& delta = choice["delta"];
    if (delta.contains("reasoning")) {
      EXPECT_EQ(delta["reasoning"], delta["reasoning_content"]);
      out.reasoning += delta["reasoning"].get<std::string>();
    }
    if (delta.contains("content")) out.content += delta["content"].get<std::string>();
    if (delta.contains("tool_calls")) out.tool_calls = delta["tool_calls"];
    if (!choice["finish_reason"].is_null()) out.finish = choice["finish_reason"];
  }
  return out;
}

// A GPT-OSS model's chat answers (harmony, scripted into the fake engine as gpt-oss writes them)
// through the real server, its tokenizer and its template: the analysis channel is `reasoning`
// without any flag, with --tool-call-parser openai a functions.* message is a tool call (the
// engine stops at <|call|>, which the server adds to the stop tokens), whole and streamed alike;
// special tokens never reach the client.
TEST(ServerHttp, GptOssHarmonyAnswersSplitIntoReasoningContentAndToolCalls) {
  GptOssDir dir;
  ServerOptions options;
  options.tool_call_parser = ToolCallParser::kOpenAi;
  ServerHarness harness(options, 4096, {}, dir.path.string(), &dir.config);
  const Tokenizer& tokenizer = *harness.engine.tokenizer();
  const auto script = [&](const std::string& answer) {
    auto ids = tokenizer.encode(answer, false);
    ASSERT_TRUE(ids.ok()) << ids.error().message;
    harness.engine.script = *ids;
  };
  // (The template writes each tool's description: one without it is a template error, as in jinja2.)
  const json tools = json::array({{{"type", "function"},
                                   {"function",
                                    {{"name", "get_weather"},
                                     {"description", "Current weather"},
                                     {"parameters", {{"type", "object"}}}}}}});
  const json messages = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}});
  json request = {{"messages", messages}, {"max_tokens", 200}, {"tools", tools}};

  script("<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant<|channel|>commentary "
         "to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|><|start|>assistant"
         "<|channel|>final<|message|>never sent");
  HttpResult whole = harness.post("/v1/chat/completions", request);
  ASSERT_EQ(whole.status, 200) << whole.body;
  const GenerationRequest sent = harness.engine.submitted().back();
  EXPECT_FALSE(sent.stop.skip_special_tokens);
  // <|call|> stops the answer; <|return|> is the tokenizer's EOS already.
  EXPECT_EQ(sent.stop.stop_token_ids, std::vector<int32_t>{*tokenizer.token_to_id("<|call|>")});
  json choice = whole.json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["stop_reason"], 200012);
  EXPECT_EQ(choice["message"]["reasoning"], "Need the weather tool.");
  EXPECT_EQ(choice["message"]["reasoning_content"], "Need the weather tool.");
  EXPECT_TRUE(choice["message"]["content"].is_null()) << whole.body;
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << whole.body;
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], R"({"city": "Paris"})");
  json streamed_request = request;
  streamed_request["stream"] = true;
  HttpResult stream = harness.post("/v1/chat/completions", streamed_request);
  ASSERT_EQ(stream.status, 200);
  StreamedChat streamed = streamed_chat(stream.body);
  EXPECT_EQ(streamed.reasoning, "Need the weather tool.");
  EXPECT_EQ(streamed.content, "");
  EXPECT_EQ(streamed.finish, "tool_calls");
  ASSERT_EQ(streamed.tool_calls.size(), 1u) << stream.body;
  EXPECT_EQ(streamed.tool_calls[0]["function"], choice["message"]["tool_calls"][0]["function"]);
  // Without tools in the request, the call's text is content.
  json without_tools = request;
  without_tools.erase("tools");
  choice = harness.post("/v1/chat/completions", without_tools).json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["message"]["content"], "{\"city\":\"Paris\"}");
  EXPECT_FALSE(choice["message"].contains("tool_calls"));

  // A plain answer: analysis, then final, ended by <|return|> (the EOS).
  script("<|channel|>analysis<|message|>Easy one.<|end|><|start|>assistant<|channel|>final<|message|>It is "
         "sunny in Paris.<|return|>");
  choice = harness.post("/v1/chat/completions", request).json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["message"]["reasoning"], "Easy one.");
  EXPECT_EQ(choice["message"]["content"], "It is sunny in Paris.");
  EXPECT_FALSE(choice["message"].contains("tool_calls"));
  streamed = streamed_chat(harness.post("/v1/chat/completions", streamed_request).body);
  EXPECT_EQ(streamed.reasoning, "Easy one.");
  EXPECT_EQ(streamed.content, "It is sunny in Paris.");
  EXPECT_EQ(streamed.finish, "stop");
  EXPECT_TRUE(streamed.tool_calls.empty());
  // Completions are not chat: their text is the model's, special tokens skipped as asked.
  const json completion = harness.post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 200}}).json();
  EXPECT_EQ(completion["choices"][0]["text"], "analysisEasy one.assistantfinalIt is sunny in Paris.");
}

// A Llama 4 instruct model's chat through the real server, its tokenizer (rebuilt from Meta's BPE
// file) and its template: the prompt the engine is given is jinja2's rendering of the same
// conversation encoded by tiktoken (chat/chat_template_reference.json's
// llama4/tools_in_user_message); with --tool-call-parser llama4_json an answer that is a JSON call
// becomes tool_calls, whole and streamed alike; <|eot|> ends an answer and never reaches the client.
TEST(ServerHttp, Llama4ChatPromptIsTheReferenceAndJsonAnswersAreToolCalls) {
  ModelConfig config;
  config.architecture = Architecture::kLlama4;
  config.architecture_name = "Llama4ForConditionalGeneration";
  ServerOptions options;
  options.tool_call_parser = ToolCallParser::kLlamaJson;
  ServerHarness harness(options, 4096, {}, testing_llama4::llama4_tokenizer_dir(), &config);
  const Tokenizer& tokenizer = *harness.engine.tokenizer();
  const auto script = [&](const std::string& answer) {
    auto ids = tokenizer.encode(answer, false);
    ASSERT_TRUE(ids.ok()) << ids.error().message;
    harness.engine.script = *ids;
  };
  // Read and sent with their keys in order: the template writes the tools as given.
  std::ifstream file(std::string(MOESERVE_TEST_DATA_DIR) + "/chat/chat_template_reference.json");
  const nlohmann::ordered_json reference = nlohmann::ordered_json::parse(file);
  nlohmann::ordered_json reference_case;
  for (const auto& chat_case : reference["cases"]) {
    if (chat_case["name"] == "llama4/tools_in_user_message") reference_case = chat_case;
  }
  ASSERT_TRUE(reference_case.is_object());
  const auto& context = reference_case["context"];
  nlohmann::ordered_json request = {
      {"messages", context["messages"]}, {"tools", context["extra"]["tools"]}, {"max_tokens", 64}};
  const auto post = [&](const nlohmann::ordered_json& body) {
    return HttpClient(harness.port()).request("POST", "/v1/chat/completions", body.dump(), {});
  };

  script("<|python_start|><|python_end|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot|>");
  HttpResult whole = post(request);
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(harness.engine.submitted().back().prompt_ids, reference_case["ids"].get<std::vector<int32_t>>());
  json choice = whole.json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null()) << whole.body;
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << whole.body;
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], R"({"city": "Paris"})");
  nlohmann::ordered_json streamed_request = request;
  streamed_request["stream"] = true;
  StreamedChat streamed = streamed_chat(post(streamed_request).body);
  EXPECT_EQ(streamed.content, "");
  EXPECT_EQ(streamed.finish, "tool_calls");
  ASSERT_EQ(streamed.tool_calls.size(), 1u);
  EXPECT_EQ(streamed.tool_calls[0]["function"], choice["message"]["tool_calls"][0]["function"]);

  // A plain answer stays content, whole and streamed, and <|eot|> (the EOS) ends it.
  script("It is sunny in Paris.<|eot|>");
  choice = post(request).json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["message"]["content"], "It is sunny in Paris.");
  EXPECT_FALSE(choice["message"].contains("tool_calls"));
  streamed = streamed_chat(post(streamed_request).body);
  EXPECT_EQ(streamed.content, "It is sunny in Paris.");
  EXPECT_EQ(streamed.finish, "stop");
  EXPECT_TRUE(streamed.tool_calls.empty());
}

// The answer parsers are checked against the model when the server starts.
TEST(ServerHttp, HarmonyParsersOnlyForGptOssAndOnlyThem) {
  GptOssDir dir;
  const auto start_error = [](ServerOptions options, const std::string& model_dir, const ModelConfig* config) {
    FakeEngineClient engine(128, model_dir, config);
    MetricsRegistry registry;
    options.host = "127.0.0.1";
    options.port = 0;
    HttpServer server(options, engine, registry, {});
    Status status = server.start();
    return status.ok() ? std::string() : status.error().message;
  };
  ServerOptions options;
  options.reasoning_parser = ReasoningParser::kOpenAiGptOss;
  options.tool_call_parser = ToolCallParser::kOpenAi;
  EXPECT_EQ(start_error(options, dir.path.string(), &dir.config), "");
  EXPECT_THAT(start_error(options, kModelDir, nullptr), ::testing::HasSubstr("is not GPT-OSS"));
  options.reasoning_parser = ReasoningParser::kDeepseekR1;
  EXPECT_THAT(start_error(options, dir.path.string(), &dir.config), ::testing::HasSubstr("use openai_gptoss"));
  options.reasoning_parser = ReasoningParser::kNone;
  options.tool_call_parser = ToolCallParser::kHermes;
  EXPECT_THAT(start_error(options, dir.path.string(), &dir.config), ::testing::HasSubstr("use openai"));
}

// A DeepSeek-V3.2 model directory as published: the tokenizer without a chat template.
struct DeepseekV32Dir {
  DeepseekV32Dir() : path(std::filesystem::temp_directory_path() / ("moeserve_dsv32_" + std::to_string(::getpid()))) {
    const std::filesystem::path tokenizer = std::filesystem::path(MOESERVE_TEST_DATA_DIR) / "tokenizers/deepseek_v3";
    std::filesystem::create_directories(path);
    std::filesystem::create_symlink(tokenizer / "tokenizer.json", path / "tokenizer.json");
    std::ifstream in(tokenizer / "tokenizer_config.json");
    json config = json::parse(in);
    config.erase("chat_template");
    std::ofstream(path / "tokenizer_config.json") << config.dump();
    model.architecture = Architecture::kDeepseekV32;
    model.architecture_name = "DeepseekV32ForCausalLM";
  }
  ~DeepseekV32Dir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
  ModelConfig model;
};

// DeepSeek-V3.2 ships no chat template: its chats are written by its published encoder, without
// a flag for such a model and with --tokenizer-mode deepseek_v32 for any; /tokenize gives the
// reference prompt's tokens (thinking mode, tools, DSML calls and results), and messages the
// encoder refuses get a 400 saying why.
TEST(ServerHttp, DeepseekV32ChatsAreWrittenByItsEncoder) {
  // (Read and sent in their key order, as a client sends them: the tools' schemas are written as
  // they come.)
  using ordered = nlohmann::ordered_json;
  std::ifstream file(MOESERVE_TEST_DATA_DIR "/chat/deepseek_v32_encoding_reference.json");
  const ordered reference = ordered::parse(file);
  ordered tools_case, refused_case;
  for (const ordered& c : reference["cases"]) {
    if (c["name"] == "thinking/tools_calls_and_results") tools_case = c;
    if (c["name"] == "error/tool_without_call") refused_case = c;
  }
  ASSERT_FALSE(tools_case.is_null());
  DeepseekV32Dir dir;
  const auto check = [&](const ServerOptions& options, const ModelConfig* model) {
    ServerHarness harness(options, 4096, {}, dir.path.string(), model);
    const Tokenizer& tokenizer = *harness.engine.tokenizer();
    const ordered body = {{"messages", tools_case["messages"]},
                          {"tools", tools_case["tools"]},
                          {"chat_template_kwargs", tools_case["chat_template_kwargs"]}};
    HttpResult tokens = HttpClient(harness.port()).request("POST", "/tokenize", body.dump(), {});
    ASSERT_EQ(tokens.status, 200) << tokens.body;
    EXPECT_EQ(tokens.json()["tokens"].get<std::vector<int32_t>>(),
              *tokenizer.encode(tools_case["prompt"].get<std::string>(), false));
    HttpResult refused =
        HttpClient(harness.port())
            .request("POST", "/v1/chat/completions", ordered{{"messages", refused_case["messages"]}}.dump(), {});
    EXPECT_EQ(refused.status, 400);
    EXPECT_NE(refused.body.find("DeepSeek-V3.2 chat encoding: messages[1]: a tool result must follow"),
              std::string::npos)
        << refused.body;
  };
  check(ServerOptions{}, &dir.model);
  ServerOptions asked;
  asked.tokenizer_mode = TokenizerMode::kDeepseekV32;
  check(asked, nullptr);
  // Without either, the model has no template.
  ServerHarness plain({}, 4096, {}, dir.path.string(), nullptr);
  EXPECT_EQ(plain.post("/v1/chat/completions", {{"messages", json::parse(tools_case["messages"].dump())}}).status,
            400);
}

TEST(ServerHttp, ChatDefaultMaxTokensIsWhatTheContextLeaves) {
  ServerHarness harness;
  const json messages = json::array({{{"role", "user"}, {"content", [] {
                                        json parts = json::array();
                                        parts.push_back({{"type", "text"}, {"text", "first"}});
                                        parts.push_back({{"type", "text"}, {"text", "second"}});
                                        return parts;
                                      }()}}});
  ASSERT_EQ(harness.post("/v1/chat/completions", {{"messages", messages}, {"max_completion_tokens", 2}}).status, 200);
  ASSERT_EQ(harness.post("/v1/chat/completions", {{"messages", messages}, {"logprobs", true}, {"top_logprobs", 1}}).status,
            200);
  auto submitted = harness.engine.submitted();
  EXPECT_EQ(submitted[0].stop.max_tokens, 2);
  EXPECT_EQ(submitted[1].stop.max_tokens, 128 - static_cast<int>(submitted[1].prompt_ids.size()));
  EXPECT_EQ(submitted[1].logprobs, 1);
  // Text parts are joined with a newline before rendering.
  auto tokenizer = harness.engine.tokenizer();
  EXPECT_NE(tokenizer->decode(submitted[0].prompt_ids, false).find("first\nsecond"), std::string::npos);
}

TEST(ServerHttp, ChatLogprobsShapeAndContinueFinalMessage) {
  ServerHarness harness;
  json messages = json::array({{{"role", "user"}, {"content", "Say it"}}, {{"role", "assistant"}, {"content", "And God"}}});
  HttpResult result = harness.post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 2},
                                                            {"logprobs", true}, {"top_logprobs", 2},
                                                            {"add_generation_prompt", false},
                                                            {"continue_final_message", true}});
  ASSERT_EQ(result.status, 200) << result.body;
  auto tokenizer = harness.engine.tokenizer();
  // The prompt stops right after the final message: no end-of-turn markup after it.
  const std::string prompt = tokenizer->decode(harness.engine.submitted().at(0).prompt_ids, false);
  EXPECT_TRUE(prompt.ends_with("And God")) << prompt;
  json content = result.json()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_TRUE(content[0]["token"].is_string());
  EXPECT_DOUBLE_EQ(content[0]["logprob"].get<double>(), -0.5);
  EXPECT_TRUE(content[0]["bytes"].is_array());
  ASSERT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(content[0]["top_logprobs"][1].contains("bytes"));
}

TEST(ServerHttp, TokenizeAndDetokenize) {
  ServerHarness harness;
  auto tokenizer = harness.engine.tokenizer();
  json tokens = harness.post("/tokenize", {{"prompt", "In the beginning"}, {"return_token_strs", true}}).json();
  const std::vector<int32_t> expected = tokenizer->encode("In the beginning", true).value();
  EXPECT_EQ(tokens["tokens"].get<std::vector<int32_t>>(), expected);
  EXPECT_EQ(tokens["count"], expected.size());
  EXPECT_EQ(tokens["max_model_len"], 128);
  EXPECT_EQ(tokens["token_strs"].size(), expected.size());
  EXPECT_EQ(tokens["token_strs"][0], "<s>");
  json no_special = harness.post("/tokenize", {{"prompt", "In the beginning"}, {"add_special_tokens", false}}).json();
  EXPECT_EQ(no_special["count"], expected.size() - 1);
  EXPECT_TRUE(no_special["token_strs"].is_null());
  json chat = harness.post("/tokenize", {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}}).json();
  EXPECT_EQ(chat["tokens"][0], tokenizer->bos_token_id().value());
  json text = harness.post("/detokenize", {{"tokens", expected}}).json();
  EXPECT_EQ(text["prompt"], tokenizer->decode(expected, false));
}

// HEAD is GET without the body: /health answers 200, every GET route sends GET's headers
// (Content-Length included) and no body bytes, so the next response on the connection follows
// the head at once. A POST route or an unknown path refuses HEAD with the error's headers alone.
TEST(ServerHttp, HeadAnswersLikeGetWithoutABody) {
  ServerHarness harness;
  HttpClient client(harness.port());
  HttpResult health = client.request("HEAD", "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.headers["Content-Length"], "0");
  for (const std::string path : {"/version", "/v1/models"}) {
    HttpResult get = client.request("GET", path);
    HttpResult head = client.request("HEAD", path);
    EXPECT_EQ(head.status, 200) << path;
    EXPECT_EQ(head.headers, get.headers) << path;
    EXPECT_EQ(head.headers["Content-Length"], std::to_string(get.body.size())) << path;
    EXPECT_EQ(head.body, "") << path;
  }
  HttpResult post_route = client.request("HEAD", "/v1/completions");
  EXPECT_EQ(post_route.status, 405);
  EXPECT_EQ(post_route.headers["Allow"], "POST");
  EXPECT_EQ(client.request("HEAD", "/nowhere").status, 404);
  HttpResult post_health = client.request("POST", "/health", "{}");
  EXPECT_EQ(post_health.status, 405);
  EXPECT_EQ(post_health.headers["Allow"], "GET, HEAD");

  // On the wire: HEAD's head, then directly the next response (no body bytes in between).
  HttpClient raw(harness.port());
  const std::string requests =
      "HEAD /version HTTP/1.1\r\nHost: x\r\n\r\n"
      "HEAD /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  boost::asio::write(raw.socket(), boost::asio::buffer(requests));
  std::string received;
  boost::system::error_code ec;
  char buffer[4096];
  while (!ec) received.append(buffer, raw.socket().read_some(boost::asio::buffer(buffer), ec));
  const size_t first_end = received.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << received;
  EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received;
  const size_t second = first_end + 4;
  EXPECT_EQ(received.compare(second, 31, "HTTP/1.1 405 Method Not Allowed"), 0) << received;
  const size_t second_end = received.find("\r\n\r\n", second);
  ASSERT_NE(second_end, std::string::npos) << received;
  EXPECT_EQ(received.compare(second_end + 4, 17, "HTTP/1.1 200 OK\r\n"), 0) << received;
  EXPECT_TRUE(received.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n")) << received;
}

TEST(ServerHttp, KeepAliveServesSeveralRequestsOnOneConnection) {
  ServerHarness harness;
  HttpClient client(harness.port());
  for (int round = 0; round < 3; ++round) {
    HttpResult result = client.request("POST", "/v1/completions", json({{"prompt", "God"}, {"max_tokens", 2}}).dump());
    EXPECT_EQ(result.status, 200);
    EXPECT_EQ(result.headers["Connection"], "keep-alive");
    HttpResult stream =
        client.request("POST", "/v1/completions", json({{"prompt", "God"}, {"max_tokens", 2}, {"stream", true}}).dump());
    EXPECT_TRUE(stream.body.ends_with("data: [DONE]\n\n"));
    EXPECT_EQ(client.request("GET", "/health").status, 200);
  }
}

TEST(ServerHttp, StopAbortsInFlightRequestsAndReturns) {
  auto harness = std::make_unique<ServerHarness>();
  harness->engine.hold_after_tokens = 1;
  HttpClient client(harness->port());
  const std::string body = json({{"prompt", "God"}, {"max_tokens", 50}, {"stream", true}}).dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  boost::asio::write(client.socket(), boost::asio::buffer(request));
  while (harness->engine.submitted().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const std::string id = harness->engine.submitted()[0].request_id;
  harness->server->stop();
  harness->thread.join();
  EXPECT_TRUE(harness->engine.wait_aborted(id));
  harness->thread = std::thread([] {});  // the destructor stops (a no-op now) and joins
}

TEST(ServerHttp, SigtermStopsTheServer) {
  FakeEngineClient engine;
  MetricsRegistry registry;
  ServerOptions options;
  options.port = 0;
  HttpServer server(options, engine, registry);
  ASSERT_TRUE(server.start().ok());
  server.stop_on_signals();
  std::thread io([&] { server.run(); });
  EXPECT_EQ(HttpClient(server.port()).request("GET", "/health").status, 200);
  std::raise(SIGTERM);
  io.join();  // run() returned
  boost::asio::io_context client_io;
  boost::asio::ip::tcp::socket socket(client_io);
  boost::system::error_code ec;
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(server.port())}, ec);
  EXPECT_TRUE(ec) << "the listener is closed";
}

}  // namespace
}  // namespace moeserve::testing
