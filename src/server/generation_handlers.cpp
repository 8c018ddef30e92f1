// The generation routes: /v1/completions and /v1/chat/completions. Each parses and validates the
// request, renders the chat template (chat), tokenizes, checks lengths and vocabulary, and
// returns a GenerationJob with one engine request per choice for the session to start.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/api_router.h"
#include "tokenizer/chat/deepseek_v32_encoding.h"

namespace moeserve {
namespace {

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python's truth value (chat_template_kwargs are read as vLLM reads them).
bool truthy(const Json& value) {
  return value.is_boolean()  ? value.get<bool>()
         : value.is_number() ? value.get<double>() != 0.0
         : value.is_string() ? !value.get_ref<const std::string&>().empty()
                             : !value.is_null() && !value.empty();
}

// chat_template_kwargs' thinking switch: `thinking`, or `enable_thinking` (DeepSeek-V3.2's, vLLM).
bool thinking_on(const Json& template_context) {
  return truthy(template_context.value("thinking", Json(false))) ||
         truthy(template_context.value("enable_thinking", Json(false)));
}

std::string_view strip(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// continue_final_message as transformers does it: keep the rendered chat up to the end of the
// final message's content, dropping the end-of-turn markup the template put after it.
ApiResult<std::string> cut_after_final_message(std::string rendered, const Json& messages) {
  const Json& content = messages.back().value("content", Json());
  const std::string final_text = content.is_string() ? content.get<std::string>() : std::string();
  const std::string_view stripped = strip(final_text);
  const size_t at = rendered.rfind(stripped);
  if (stripped.empty() || at == std::string::npos) {
    return bad_request("continue_final_message is set but the final message does not appear in the rendered chat",
                       "continue_final_message");
  }
  std::string_view lstripped = final_text;
  while (!lstripped.empty() && is_space(lstripped.front())) lstripped.remove_prefix(1);
  const bool keeps_trailing_space = std::string_view(rendered).substr(at, lstripped.size()) == lstripped;
  rendered.resize(at + (keeps_trailing_space ? lstripped.size() : stripped.size()));
  return rendered;
}

}  // namespace

JobSpec ApiRouter::job_spec(ApiKind kind, const GenerationParams& params) const {
  JobSpec spec;
  spec.kind = kind;
  spec.response_id = random_id(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-");
  spec.model_name = model_names_.front();
  spec.created = unix_seconds();
  spec.stream = params.stream;
  spec.include_usage = params.include_usage;
  spec.continuous_usage_stats = params.continuous_usage_stats;
  spec.logprobs = params.logprobs.has_value();
  return spec;
}

std::optional<ApiError> ApiRouter::check_capacity(size_t num_prompts, int n) const {
  // Every choice of every prompt is one sequence in the engine's queue, as vLLM counts them: a
  // request of 1,000 prompts x n=128 is 128,000 waiting sequences, not one request.
  if (options_.max_waiting_requests <= 0) return std::nullopt;
  const int64_t limit = options_.max_waiting_requests;
  const int64_t sequences = static_cast<int64_t>(num_prompts) * std::max(n, 1);
  if (sequences > limit) {
    return service_unavailable(fmt::format(
        "The request asks for {} sequences ({} prompt(s) x n={}), more than --max-waiting-requests {}; send fewer "
        "prompts or a smaller n.",
        sequences, num_prompts, n, limit));
  }
  const EngineStats stats = engine_.stats();
  if (stats.num_waiting + sequences <= limit) return std::nullopt;
  return service_unavailable(
      fmt::format("The server is overloaded ({} sequences waiting, this request adds {}, limit {}); retry later.",
                  stats.num_waiting, sequences, limit));
}

ApiResult<std::string> ApiRouter::render_chat(const Json& messages, bool add_generation_prompt,
                                              bool continue_final_message, const Json& template_context) const {
  if (deepseek_v32_encoding_) {
    Result<std::string> encoded =
        chat::encode_deepseek_v32(messages, template_context.value("tools", Json()), thinking_on(template_context));
    if (!encoded.ok()) return bad_request("DeepSeek-V3.2 chat encoding: " + encoded.error().message, "messages");
    if (continue_final_message) return cut_after_final_message(std::move(encoded).value(), messages);
    return std::move(encoded).value();
  }
  if (!chat_template_) return bad_request(no_template_reason_, "messages");
  chat::RenderOptions render_options;
  render_options.add_generation_prompt = add_generation_prompt;
  render_options.extra_context = template_context;
  render_options.bos_token = tokenizer_->bos_token();
  render_options.eos_token = tokenizer_->eos_token();
  Result<std::string> rendered = chat_template_->render(messages, render_options);
  if (!rendered.ok()) {
    // The template's own raise_exception message already carries the prefix; other runtime
    // errors (an undefined variable at line N, ...) get it here. Either way it is said once.
    const std::string& message = rendered.error().message;
    if (message.starts_with(chat::kTemplateRaisedPrefix)) return bad_request(message, "messages");
    return bad_request(chat::kTemplateRaisedPrefix + message, "messages");
  }
  if (continue_final_message) return cut_after_final_message(std::move(rendered).value(), messages);
  return std::move(rendered).value();
}

void ApiRouter::log_request(const std::string& id, const JobSpec& spec) const {
  if (options_.disable_log_requests || spec.requests.empty()) return;
  const GenerationRequest& first = spec.requests.front();
  spdlog::info("request {}: {} choice(s), {} prompt tokens, max_tokens={}, temperature={}, top_p={}, top_k={}, "
               "seed={}, stream={}",
               id, spec.requests.size(), spec.num_prompt_tokens, first.stop.max_tokens, first.sampling.temperature,
               first.sampling.top_p, first.sampling.top_k,
               first.sampling.seed ? std::to_string(*first.sampling.seed) : "none", spec.stream);
}

RouteOutcome ApiRouter::completions(const Json& body) {
  ApiResult<CompletionRequest> parsed = parse_completion_request(body, options_);
  if (!parsed.ok()) return respond(error_response(parsed.error()));
  CompletionRequest& request = parsed.value();
  if (auto error = check_model(request.params.model)) return respond(error_response(*error));
  const int32_t vocab = tokenizer_->vocab_size();
  if (auto error = check_token_ids(request.params.stop.stop_token_ids, vocab, "stop_token_ids")) {
    return respond(error_response(*error));
  }
  // Before tokenizing: a request over the bound is refused without doing its work.
  if (auto error = check_capacity(request.prompts.size(), request.params.n)) return respond(error_response(*error));
  JobSpec spec = job_spec(ApiKind::kCompletion, request.params);
  for (size_t prompt_idx = 0; prompt_idx < request.prompts.size(); ++prompt_idx) {
    const PromptInput& prompt = request.prompts[prompt_idx];
    std::vector<int32_t> ids = prompt.token_ids;
    if (prompt.text) {
      ApiResult<std::vector<int32_t>> encoded =
          encode_prompt(*prompt.text, request.params.add_special_tokens.value_or(true), "prompt");
      if (!encoded.ok()) return respond(error_response(encoded.error()));
      ids = std::move(encoded).value();
    } else if (auto error = check_token_ids(ids, vocab, "prompt")) {
      return respond(error_response(*error));
    }
    if (ids.empty()) return respond(error_response(bad_request("the prompt is empty", "prompt")));
    ApiResult<int> max_tokens = resolve_max_tokens(request.params, ApiKind::kCompletion, static_cast<int>(ids.size()),
                                                   engine_.info().max_model_len, options_.sampling_defaults);
    if (!max_tokens.ok()) return respond(error_response(max_tokens.error()));
    const std::string echo = request.echo ? (prompt.text ? *prompt.text : tokenizer_->decode(ids, false)) : "";
    std::vector<GenerationRequest> choices = make_generation_requests(
        request.params, ids, max_tokens.value(), spec.response_id, static_cast<int>(prompt_idx) * request.params.n);
    for (GenerationRequest& choice : choices) {
      spec.requests.push_back(std::move(choice));
      spec.echo_text.push_back(echo);
      spec.choice_prompt_tokens.push_back(static_cast<int>(ids.size()));
    }
    spec.num_prompt_tokens += static_cast<int>(ids.size());
  }
  if (auto error = check_capacity(request.prompts.size(), request.params.n)) return respond(error_response(*error));
  log_request(spec.response_id, spec);
  return RouteOutcome{HttpResponse(), std::make_shared<GenerationJob>(std::move(spec), tokenizer_, dispatcher_)};
}

RouteOutcome ApiRouter::chat_completions(const Json& body) {
  ApiResult<ChatRequest> parsed = parse_chat_request(body, options_);
  if (!parsed.ok()) return respond(error_response(parsed.error()));
  ChatRequest& request = parsed.value();
  if (auto error = check_model(request.params.model)) return respond(error_response(*error));
  if (auto error = check_token_ids(request.params.stop.stop_token_ids, tokenizer_->vocab_size(), "stop_token_ids")) {
    return respond(error_response(*error));
  }
  ApiResult<std::string> prompt = render_chat(request.messages, request.add_generation_prompt,
                                              request.continue_final_message, request.template_context);
  if (!prompt.ok()) return respond(error_response(prompt.error()));
  // The template already wrote BOS and the turn markers: no special tokens are added (vLLM).
  ApiResult<std::vector<int32_t>> ids =
      encode_prompt(prompt.value(), request.params.add_special_tokens.value_or(false), "messages");
  if (!ids.ok()) return respond(error_response(ids.error()));
  if (ids.value().empty()) return respond(error_response(bad_request("the rendered chat is empty", "messages")));
  const int prompt_len = static_cast<int>(ids.value().size());
  ApiResult<int> max_tokens = resolve_max_tokens(request.params, ApiKind::kChat, prompt_len,
                                                 engine_.info().max_model_len, options_.sampling_defaults);
  if (!max_tokens.ok()) return respond(error_response(max_tokens.error()));
  JobSpec spec = job_spec(ApiKind::kChat, request.params);
  spec.requests = make_generation_requests(request.params, ids.value(), max_tokens.value(), spec.response_id, 0);
  spec.choice_prompt_tokens.assign(spec.requests.size(), prompt_len);
  spec.num_prompt_tokens = prompt_len;
  const auto tools = request.template_context.find("tools");
  const bool parse_tools = options_.tool_call_parser != ToolCallParser::kNone &&
                           tools != request.template_context.end() && !tools->empty() &&
                           body.value("tool_choice", Json("auto")) != "none";
  if (harmony_) {
    // GPT-OSS: the channels are special tokens, kept in the text; <|call|> and <|return|> end
    // the answer (vLLM adds them to the stop tokens the same way).
    spec.harmony.emplace(parse_tools);
    for (GenerationRequest& choice : spec.requests) {
      choice.stop.skip_special_tokens = false;
      for (std::string_view stop : {"<|call|>", "<|return|>"}) {
        const std::optional<int32_t> id = tokenizer_->token_to_id(stop);
        std::vector<int32_t>& ids = choice.stop.stop_token_ids;
        if (id && id != tokenizer_->eos_token_id() && std::find(ids.begin(), ids.end(), *id) == ids.end()) {
          ids.push_back(*id);
        }
      }
    }
  } else if (options_.reasoning_parser != ReasoningParser::kNone) {
    spec.reasoning.emplace(options_.reasoning_parser, thinking_on(request.template_context), prompt.value());
  }
  if (!harmony_ && parse_tools) {
    spec.tool_call_parser = options_.tool_call_parser;
    spec.tools = *tools;
    // The markup may be special tokens (DeepSeek's): keep them in the text, as vLLM's parsers do.
    if (!whole_answer(options_.tool_call_parser)) {
      for (GenerationRequest& choice : spec.requests) choice.stop.skip_special_tokens = false;
    }
  }
  if (auto error = check_capacity(1, request.params.n)) return respond(error_response(*error));
  log_request(spec.response_id, spec);
  return RouteOutcome{HttpResponse(), std::make_shared<GenerationJob>(std::move(spec), tokenizer_, dispatcher_)};
}

}  // namespace moeserve
