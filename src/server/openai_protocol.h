// OpenAI request parsing and validation: the JSON bodies of /v1/completions and
// /v1/chat/completions (with vLLM's extra sampling fields) become typed, range-checked
// requests, and from there one engine GenerationRequest per choice. Every problem is a 400
// ApiError naming the field. Tokenization and the chat template happen in the handlers, since
// they need the model's tokenizer; the length check against max_model_len happens here once
// the prompt length is known.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/api_result.h"
#include "server/field_reader.h"
#include "server/server_options.h"

namespace moeserve {

enum class ApiKind { kCompletion, kChat };

// Fields both APIs share, validated and with the model's defaults applied.
struct GenerationParams {
  std::optional<std::string> model;
  int n = 1;
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  bool continuous_usage_stats = false;  // stream_options.continuous_usage_stats (vLLM)
  std::optional<int> max_tokens;        // nullopt: the API's default (resolve_max_tokens)
  SamplingParams sampling;
  StopParams stop;              // stop.max_tokens is set by resolve_max_tokens
  std::optional<int> logprobs;  // top alternatives per token; nullopt: no logprobs at all
  std::optional<bool> add_special_tokens;  // nullopt: the API's default
};

// One prompt of a completions request: text to tokenize, or token ids as given.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;
};

struct CompletionRequest {
  GenerationParams params;
  std::vector<PromptInput> prompts;  // a batch: each prompt gets n choices
  bool echo = false;
};

struct ChatRequest {
  GenerationParams params;
  Json messages;  // validated; content normalised to a string (text parts joined by "\n")
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  Json template_context = Json::object();  // tools, documents, chat_template_kwargs
};

ApiResult<CompletionRequest> parse_completion_request(const Json& body, const ServerOptions& options);
ApiResult<ChatRequest> parse_chat_request(const Json& body, const ServerOptions& options);

// The number of tokens to generate, given the prompt length: the request's max_tokens (an error
// when prompt + max_tokens exceeds max_model_len, naming both numbers), else the API default
// (16 for completions, what is left of the context for chat, as vLLM), capped by the model's
// generation-config max_new_tokens and by the context left.
ApiResult<int> resolve_max_tokens(const GenerationParams& params, ApiKind kind, int prompt_len, int max_model_len,
                                  const SamplingDefaults& defaults);

// Checks token ids against the vocabulary (prompt ids and stop_token_ids).
std::optional<ApiError> check_token_ids(const std::vector<int32_t>& ids, int32_t vocab_size, const std::string& param);

// The engine requests of one prompt: choices first_index .. first_index + n - 1, ids
// `<base_id>-<choice index>`, seeds offset by the choice's position within the prompt.
std::vector<GenerationRequest> make_generation_requests(const GenerationParams& params,
                                                        const std::vector<int32_t>& prompt_ids, int max_tokens,
                                                        const std::string& base_id, int first_index);

}  // namespace moeserve
