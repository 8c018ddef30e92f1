// OpenAI request parsing without a network: vLLM's defaults and the generation-config
// defaults, per-choice ids and seeds, max_tokens resolution against max_model_len, chat message
// normalisation (text parts, tool-call arguments), and the error bodies' exact shape.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "server/generation_config.h"
#include "server/openai_protocol.h"
#include "server/openai_responses.h"

namespace moeserve {
namespace {

TEST(OpenAiProtocol, GenerationConfigDefaultsApplyWhenTheRequestLeavesFieldsUnset) {
  ServerOptions options;
  options.sampling_defaults.temperature = 0.6f;
  options.sampling_defaults.top_p = 0.9f;
  options.sampling_defaults.top_k = 20;
  options.sampling_defaults.repetition_penalty = 1.1f;
  auto defaulted = parse_completion_request(Json{{"prompt", "x"}}, options);
  ASSERT_TRUE(defaulted.ok());
  const SamplingParams& sampling = defaulted.value().params.sampling;
  EXPECT_FLOAT_EQ(sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(sampling.top_p, 0.9f);
  EXPECT_EQ(sampling.top_k, 20);
  EXPECT_FLOAT_EQ(sampling.repetition_penalty, 1.1f);
  auto explicit_values =
      parse_completion_request(Json{{"prompt", "x"}, {"temperature", 1e-6}, {"top_k", -1}, {"top_p", 1}}, options);
  ASSERT_TRUE(explicit_values.ok());
  EXPECT_EQ(explicit_values.value().params.sampling.temperature, 0.0f);  // below vLLM's epsilon: greedy
  EXPECT_EQ(explicit_values.value().params.sampling.top_k, 0);           // -1 means disabled
  EXPECT_EQ(explicit_values.value().params.sampling.top_p, 1.0f);
}

// GPT-OSS ends a turn with <|return|> (200002) and a tool call with <|call|> (200012): its
// config.json names only 200002, its published generation_config.json all three stop ids
// (with <|endoftext|> 199999), so the server stops at each with --generation-config auto.
TEST(GenerationConfigFile, GptOssStopsAtReturnEndoftextAndCall) {
  auto dir = std::filesystem::temp_directory_path() / ("moeserve_gpt_oss_gen_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "generation_config.json") << R"({
  "bos_token_id": 199998,
  "do_sample": true,
  "eos_token_id": [200002, 199999, 200012],
  "pad_token_id": 199999,
  "transformers_version": "4.55.0.dev0"
})";
  ModelConfig config;
  config.eos_token_ids = {200002};
  auto loaded = load_generation_config("auto", dir.string(), config);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->eos_token_ids, (std::vector<int32_t>{200002, 199999, 200012}));
  EXPECT_FALSE(loaded->sampling.temperature.has_value());  // do_sample alone sets no default
  auto ignored = load_generation_config("vllm", dir.string(), config);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(ignored->eos_token_ids, (std::vector<int32_t>{200002}));
  std::filesystem::remove_all(dir);
}

TEST(OpenAiProtocol, ChoicesGetIdsAndSeedOffsets) {
  auto request = parse_completion_request(Json{{"prompt", "x"}, {"n", 3}, {"seed", 7}}, ServerOptions{});
  ASSERT_TRUE(request.ok());
  auto requests = make_generation_requests(request.value().params, {1, 2}, 5, "cmpl-abc", 3);
  ASSERT_EQ(requests.size(), 3u);
  for (int idx = 0; idx < 3; ++idx) {
    EXPECT_EQ(requests[idx].request_id, "cmpl-abc-" + std::to_string(3 + idx));
    EXPECT_EQ(requests[idx].sampling.seed.value(), 7u + idx);
    EXPECT_EQ(requests[idx].stop.max_tokens, 5);
    EXPECT_EQ(requests[idx].prompt_ids, (std::vector<int32_t>{1, 2}));
  }
  auto unseeded = parse_completion_request(Json{{"prompt", "x"}, {"n", 2}}, ServerOptions{});
  for (const auto& choice : make_generation_requests(unseeded.value().params, {1}, 1, "c", 0)) {
    EXPECT_FALSE(choice.sampling.seed.has_value());
  }
}

TEST(OpenAiProtocol, MaxTokensResolution) {
  GenerationParams params;
  SamplingDefaults defaults;
  EXPECT_EQ(resolve_max_tokens(params, ApiKind::kCompletion, 10, 100, defaults).value(), 16);
  EXPECT_EQ(resolve_max_tokens(params, ApiKind::kCompletion, 90, 100, defaults).value(), 10);
  EXPECT_EQ(resolve_max_tokens(params, ApiKind::kChat, 10, 100, defaults).value(), 90);
  defaults.max_new_tokens = 32;
  EXPECT_EQ(resolve_max_tokens(params, ApiKind::kChat, 10, 100, defaults).value(), 32);
  params.max_tokens = 90;
  EXPECT_EQ(resolve_max_tokens(params, ApiKind::kChat, 10, 100, defaults).value(), 90);
  params.max_tokens = 91;
  auto too_long = resolve_max_tokens(params, ApiKind::kChat, 10, 100, defaults);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message,
            "This model's maximum context length is 100 tokens. However, you requested 101 tokens (10 in the messages, "
            "91 in the completion). Please reduce the length of the messages or completion.");
  EXPECT_FALSE(resolve_max_tokens(GenerationParams{}, ApiKind::kChat, 100, 100, defaults).ok());
}

TEST(OpenAiProtocol, ChatMessagesAreNormalisedForTheTemplate) {
  Json body = Json::parse(R"({
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "tool_call_id": "1", "content": "42"}
    ],
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "chat_template_kwargs": {"enable_thinking": false}
  })");
  auto request = parse_chat_request(body, ServerOptions{});
  ASSERT_TRUE(request.ok()) << request.error().message;
  const Json& messages = request.value().messages;
  EXPECT_EQ(messages[0]["content"], "a\nb");
  EXPECT_TRUE(messages[1]["content"].is_null());
  EXPECT_EQ(messages[1]["tool_calls"][0]["function"]["arguments"], Json({{"x", 1}}));
  EXPECT_EQ(messages[2]["tool_call_id"], "1");
  EXPECT_EQ(request.value().template_context["enable_thinking"], false);
  EXPECT_EQ(request.value().template_context["tools"].size(), 1u);
  EXPECT_TRUE(request.value().add_generation_prompt);
  EXPECT_FALSE(request.value().params.max_tokens.has_value());
}

TEST(OpenAiProtocol, ReasoningEffortReachesTheTemplate) {
  const Json messages = Json::parse(R"([{"role": "user", "content": "hi"}])");
  auto request = parse_chat_request(Json{{"messages", messages}, {"reasoning_effort", "high"}}, ServerOptions{});
  ASSERT_TRUE(request.ok()) << request.error().message;
  EXPECT_EQ(request.value().template_context["reasoning_effort"], "high");
  auto kwargs_win = parse_chat_request(
      Json{{"messages", messages}, {"reasoning_effort", "high"}, {"chat_template_kwargs", {{"reasoning_effort", "low"}}}},
      ServerOptions{});
  ASSERT_TRUE(kwargs_win.ok());
  EXPECT_EQ(kwargs_win.value().template_context["reasoning_effort"], "low");
  auto unset = parse_chat_request(Json{{"messages", messages}}, ServerOptions{});
  ASSERT_TRUE(unset.ok());
  EXPECT_FALSE(unset.value().template_context.contains("reasoning_effort"));
  EXPECT_FALSE(parse_chat_request(Json{{"messages", messages}, {"reasoning_effort", 3}}, ServerOptions{}).ok());
}

TEST(OpenAiProtocol, ErrorBodyShape) {
  EXPECT_EQ(bad_request("`top_p` must be in (0, 1], got 1.5", "top_p").to_json(),
            R"({"error":{"message":"`top_p` must be in (0, 1], got 1.5","type":"BadRequestError","param":"top_p","code":400}})");
  EXPECT_EQ(not_found("Route /x not found.").to_json(),
            R"({"error":{"message":"Route /x not found.","type":"NotFoundError","param":null,"code":404}})");
}

TEST(OpenAiProtocol, UsageAndSseFraming) {
  EXPECT_EQ(dump_json(usage_json(5, 7)),
            R"({"prompt_tokens":5,"total_tokens":12,"completion_tokens":7,"prompt_tokens_details":null})");
  EXPECT_EQ(sse_event(Json{{"a", 1}}), "data: {\"a\":1}\n\n");
  // Invalid UTF-8 never breaks a response.
  EXPECT_EQ(dump_json(Json(std::string("a\xff"))), "\"a\xEF\xBF\xBD\"");
  EXPECT_TRUE(random_id("cmpl-").starts_with("cmpl-"));
  EXPECT_EQ(random_id("cmpl-").size(), 5u + 32u);
}

}  // namespace
}  // namespace moeserve
