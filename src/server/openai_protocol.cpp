// Parsing and validation of OpenAI completions / chat requests (vLLM's field set and ranges).
#include "server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace moeserve {
namespace {

constexpr int kMaxChoices = 128;
constexpr float kGreedyEpsilon = 1e-5f;  // vLLM treats temperatures below this as greedy

// Fields whose behaviour we do not implement: present and non-empty is an error rather than a
// silent difference from vLLM.
void refuse_unsupported(const Json& body, FieldReader& reader, ApiKind kind) {
  static const char* kAlways[] = {"prompt_logprobs", "guided_json",  "guided_regex",       "guided_choice",
                                  "guided_grammar",  "structured_outputs", "allowed_token_ids", "truncate_prompt_tokens",
                                  "logits_processors", "prompt_embeds", "suffix"};
  for (const char* key : kAlways) {
    const Json* value = reader.field(key);
    if (value != nullptr && !(value->is_string() && value->get<std::string>().empty())) {
      reader.fail(fmt::format("`{}` is not supported by this server", key), key);
    }
  }
  if (const Json* bias = reader.field("logit_bias"); bias != nullptr && !bias->empty()) {
    reader.fail("`logit_bias` is not supported by this server", "logit_bias");
  }
  if (const Json* words = reader.field("bad_words"); words != nullptr && !words->empty()) {
    reader.fail("`bad_words` is not supported by this server", "bad_words");
  }
  if (reader.boolean("use_beam_search").value_or(false)) {
    reader.fail("beam search is not supported by this server", "use_beam_search");
  }
  if (kind == ApiKind::kChat) {
    if (const Json* format = reader.field("response_format"); format != nullptr) {
      if (!format->is_object() || format->value("type", "") != "text") {
        reader.fail("only `response_format` {\"type\": \"text\"} is supported", "response_format");
      }
    }
    if (const Json* choice = reader.field("tool_choice"); choice != nullptr) {
      if (!choice->is_string() || (*choice != "auto" && *choice != "none")) {
        reader.fail("only `tool_choice` \"auto\" and \"none\" are supported", "tool_choice");
      }
    }
    if (reader.field("chat_template") != nullptr) {
      reader.fail("a request-supplied `chat_template` is not allowed; start the server with --chat-template",
                  "chat_template");
    }
  }
}

std::vector<std::string> read_stop_strings(FieldReader& reader) {
  std::vector<std::string> stops;
  const Json* stop = reader.field("stop");
  if (stop == nullptr) return stops;
  if (stop->is_string()) {
    stops.push_back(stop->get<std::string>());
  } else if (stop->is_array()) {
    for (const Json& item : *stop) {
      if (!item.is_string()) {
        reader.fail("`stop` must be a string or an array of strings", "stop");
        return {};
      }
      stops.push_back(item.get<std::string>());
    }
  } else {
    reader.fail("`stop` must be a string or an array of strings", "stop");
    return {};
  }
  for (const std::string& text : stops) {
    if (text.empty()) reader.fail("`stop` strings must not be empty", "stop");
  }
  return stops;
}

std::vector<int32_t> read_token_array(FieldReader& reader, const std::string& key) {
  std::vector<int32_t> ids;
  const Json* value = reader.field(key);
  if (value == nullptr) return ids;
  if (!value->is_array()) {
    reader.fail(fmt::format("`{}` must be an array of integers", key), key);
    return ids;
  }
  for (const Json& item : *value) {
    std::optional<int64_t> id = json_integer(item);
    if (!id || *id < 0 || *id > std::numeric_limits<int32_t>::max()) {
      reader.fail(fmt::format("`{}` must be an array of non-negative integer token ids", key), key);
      return {};
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

void read_sampling(FieldReader& reader, const SamplingDefaults& defaults, SamplingParams& sampling) {
  sampling.temperature = static_cast<float>(reader.number_in("temperature", 0.0, 1e6).value_or(defaults.temperature.value_or(1.0f)));
  if (sampling.temperature < kGreedyEpsilon) sampling.temperature = 0.0f;
  if (std::optional<double> top_p = reader.number("top_p")) {
    if (!(*top_p > 0.0 && *top_p <= 1.0)) reader.fail(fmt::format("`top_p` must be in (0, 1], got {}", *top_p), "top_p");
    sampling.top_p = static_cast<float>(*top_p);
  } else {
    sampling.top_p = defaults.top_p.value_or(1.0f);
  }
  int64_t top_k = reader.integer_in("top_k", -1, std::numeric_limits<int32_t>::max()).value_or(defaults.top_k.value_or(0));
  sampling.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  sampling.min_p = static_cast<float>(reader.number_in("min_p", 0.0, 1.0).value_or(defaults.min_p.value_or(0.0f)));
  sampling.presence_penalty = static_cast<float>(reader.number_in("presence_penalty", -2.0, 2.0).value_or(0.0));
  sampling.frequency_penalty = static_cast<float>(reader.number_in("frequency_penalty", -2.0, 2.0).value_or(0.0));
  if (std::optional<double> penalty = reader.number("repetition_penalty")) {
    if (!(*penalty > 0.0 && std::isfinite(*penalty))) {
      reader.fail(fmt::format("`repetition_penalty` must be a positive number, got {}", *penalty), "repetition_penalty");
    }
    sampling.repetition_penalty = static_cast<float>(*penalty);
  } else {
    sampling.repetition_penalty = defaults.repetition_penalty.value_or(1.0f);
  }
  if (const Json* seed = reader.field("seed"); seed != nullptr) {
    if (seed->is_number_unsigned()) {
      sampling.seed = seed->get<uint64_t>();
    } else if (std::optional<int64_t> value = json_integer(*seed)) {
      sampling.seed = static_cast<uint64_t>(*value);
    } else {
      reader.fail("`seed` must be an integer", "seed");
    }
  }
}

void read_stream_options(FieldReader& reader, GenerationParams& params) {
  params.stream = reader.boolean("stream").value_or(false);
  const Json* options = reader.field("stream_options");
  if (options == nullptr) return;
  if (!params.stream) {
    reader.fail("`stream_options` can only be set when `stream` is true", "stream_options");
    return;
  }
  if (!options->is_object()) {
    reader.fail("`stream_options` must be an object", "stream_options");
    return;
  }
  FieldReader inner(*options);
  params.include_usage = inner.boolean("include_usage").value_or(false);
  params.continuous_usage_stats = inner.boolean("continuous_usage_stats").value_or(false);
  if (!inner.ok()) reader.fail("stream_options." + inner.error().message, "stream_options");
}

// The fields common to both APIs, except max_tokens and logprobs whose names differ.
GenerationParams read_common(const Json& body, FieldReader& reader, const ServerOptions& options, ApiKind kind) {
  GenerationParams params;
  refuse_unsupported(body, reader, kind);
  params.model = reader.string("model");
  params.n = static_cast<int>(reader.integer_in("n", 1, kMaxChoices).value_or(1));
  if (std::optional<int64_t> best_of = reader.integer("best_of"); best_of && *best_of != params.n) {
    reader.fail("`best_of` other than `n` is not supported", "best_of");
  }
  read_stream_options(reader, params);
  read_sampling(reader, options.sampling_defaults, params.sampling);
  params.stop.stop = read_stop_strings(reader);
  params.stop.stop_token_ids = read_token_array(reader, "stop_token_ids");
  params.stop.ignore_eos = reader.boolean("ignore_eos").value_or(false);
  params.stop.min_tokens = static_cast<int>(reader.integer_in("min_tokens", 0, std::numeric_limits<int32_t>::max()).value_or(0));
  params.stop.skip_special_tokens = reader.boolean("skip_special_tokens").value_or(true);
  params.stop.include_stop_str_in_output = reader.boolean("include_stop_str_in_output").value_or(false);
  params.add_special_tokens = reader.boolean("add_special_tokens");
  return params;
}

void read_max_tokens(FieldReader& reader, GenerationParams& params, const char* key) {
  if (std::optional<int64_t> max_tokens = reader.integer(key)) {
    if (*max_tokens < 1) {
      reader.fail(fmt::format("`{}` must be at least 1, got {}", key, *max_tokens), key);
    } else {
      params.max_tokens = static_cast<int>(std::min<int64_t>(*max_tokens, std::numeric_limits<int32_t>::max()));
    }
  }
  if (params.max_tokens && params.stop.min_tokens > *params.max_tokens) {
    reader.fail(fmt::format("`min_tokens` ({}) must not exceed `{}` ({})", params.stop.min_tokens, key, *params.max_tokens),
                "min_tokens");
  }
}

// A prompt that is a flat array of token ids; nullopt (with an error recorded) otherwise.
std::optional<std::vector<int32_t>> token_prompt(const Json& array, FieldReader& reader) {
  std::vector<int32_t> ids;
  for (const Json& item : array) {
    std::optional<int64_t> id = json_integer(item);
    if (!id || *id < 0 || *id > std::numeric_limits<int32_t>::max()) {
      reader.fail("`prompt` token ids must be non-negative integers", "prompt");
      return std::nullopt;
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

std::vector<PromptInput> read_prompts(FieldReader& reader) {
  const Json* prompt = reader.field("prompt");
  constexpr const char* kShape = "`prompt` must be a string, an array of strings, an array of token ids or an array of "
                                 "arrays of token ids";
  if (prompt == nullptr) {
    reader.fail("`prompt` is required", "prompt");
    return {};
  }
  if (prompt->is_string()) return {PromptInput{.text = prompt->get<std::string>()}};
  if (!prompt->is_array() || prompt->empty()) {
    reader.fail(prompt->is_array() ? "`prompt` must not be empty" : kShape, "prompt");
    return {};
  }
  std::vector<PromptInput> prompts;
  const Json& first = prompt->front();
  if (first.is_number()) {
    if (auto ids = token_prompt(*prompt, reader)) prompts.push_back(PromptInput{.token_ids = std::move(*ids)});
    return prompts;
  }
  for (const Json& item : *prompt) {
    if (item.is_string() && first.is_string()) {
      prompts.push_back(PromptInput{.text = item.get<std::string>()});
    } else if (item.is_array() && first.is_array()) {
      auto ids = token_prompt(item, reader);
      if (!ids) return {};
      prompts.push_back(PromptInput{.token_ids = std::move(*ids)});
    } else {
      reader.fail(kShape, "prompt");
      return {};
    }
  }
  return prompts;
}

// Content as a template sees it: a string, or text parts joined by "\n" (vLLM's "string"
// content format); null stays null (an assistant turn with only tool calls).
std::optional<Json> normalise_content(const Json& content, size_t index, FieldReader& reader) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_null() || content.is_string()) return content;
  if (!content.is_array()) {
    reader.fail(param + " must be a string or an array of content parts", param);
    return std::nullopt;
  }
  std::string text;
  for (size_t part_idx = 0; part_idx < content.size(); ++part_idx) {
    const Json& part = content[part_idx];
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      reader.fail(param + " parts must be objects with a `type`", param);
      return std::nullopt;
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "text") {
      reader.fail(fmt::format("{} part type `{}` is not supported (text only)", param, type), param);
      return std::nullopt;
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      reader.fail(param + " text parts need a string `text`", param);
      return std::nullopt;
    }
    if (part_idx > 0) text += "\n";
    text += part["text"].get<std::string>();
  }
  return Json(text);
}

// Templates (Llama 3.1, Mistral, ...) iterate tool-call arguments as a mapping, so JSON-string
// arguments are decoded as vLLM does; anything that is not a JSON object is left as sent.
void decode_tool_call_arguments(Json& message) {
  auto calls = message.find("tool_calls");
  if (calls == message.end() || !calls->is_array()) return;
  for (Json& call : *calls) {
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
    Json& function = call["function"];
    if (!function.contains("arguments") || !function["arguments"].is_string()) continue;
    Json decoded = Json::parse(function["arguments"].get<std::string>(), nullptr, false);
    if (!decoded.is_discarded() && decoded.is_object()) function["arguments"] = std::move(decoded);
  }
}

Json read_messages(FieldReader& reader) {
  static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool", "function"};
  const Json* messages = reader.field("messages");
  if (messages == nullptr || !messages->is_array()) {
    reader.fail(messages == nullptr ? "`messages` is required" : "`messages` must be an array", "messages");
    return Json::array();
  }
  if (messages->empty()) {
    reader.fail("`messages` must not be empty", "messages");
    return Json::array();
  }
  Json out = Json::array();
  for (size_t index = 0; index < messages->size(); ++index) {
    const Json& message = (*messages)[index];
    const std::string param = fmt::format("messages[{}]", index);
    if (!message.is_object()) {
      reader.fail(param + " must be an object", param);
      return Json::array();
    }
    auto role = message.find("role");
    if (role == message.end() || !role->is_string()) {
      reader.fail(param + ".role must be a string", param + ".role");
      return Json::array();
    }
    const std::string role_name = role->get<std::string>();
    if (std::find(std::begin(kRoles), std::end(kRoles), role_name) == std::end(kRoles)) {
      reader.fail(fmt::format("{}.role `{}` is not one of system, developer, user, assistant, tool, function", param,
                              role_name),
                  param + ".role");
      return Json::array();
    }
    Json normalised = message;
    std::optional<Json> content = normalise_content(message.value("content", Json()), index, reader);
    if (!content) return Json::array();
    normalised["content"] = std::move(*content);
    decode_tool_call_arguments(normalised);
    out.push_back(std::move(normalised));
  }
  return out;
}

Json read_template_context(FieldReader& reader) {
  Json context = Json::object();
  if (const Json* kwargs = reader.field("chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      reader.fail("`chat_template_kwargs` must be an object", "chat_template_kwargs");
    } else {
      for (auto it = kwargs->begin(); it != kwargs->end(); ++it) context[it.key()] = it.value();
    }
  }
  // OpenAI's top-level `reasoning_effort` reaches the template as the variable of that name, as
  // vLLM passes it (GPT-OSS prints "Reasoning: <effort>"); chat_template_kwargs' own wins.
  if (const Json* effort = reader.field("reasoning_effort"); effort != nullptr && !effort->is_null()) {
    if (!effort->is_string()) {
      reader.fail("`reasoning_effort` must be a string", "reasoning_effort");
    } else if (!context.contains("reasoning_effort")) {
      context["reasoning_effort"] = *effort;
    }
  }
  for (const char* key : {"tools", "documents"}) {
    if (const Json* value = reader.field(key)) {
      if (!value->is_array()) {
        reader.fail(fmt::format("`{}` must be an array", key), key);
      } else {
        context[key] = *value;
      }
    }
  }
  return context;
}

}  // namespace

ApiResult<CompletionRequest> parse_completion_request(const Json& body, const ServerOptions& options) {
  if (!body.is_object()) return bad_request("request body must be a JSON object");
  FieldReader reader(body);
  CompletionRequest request;
  request.params = read_common(body, reader, options, ApiKind::kCompletion);
  read_max_tokens(reader, request.params, "max_tokens");
  if (std::optional<int64_t> logprobs = reader.integer_in("logprobs", 0, options.max_logprobs)) {
    request.params.logprobs = static_cast<int>(*logprobs);
  }
  request.echo = reader.boolean("echo").value_or(false);
  if (request.echo && request.params.logprobs) {
    reader.fail("`echo` together with `logprobs` needs prompt logprobs, which this server does not compute", "echo");
  }
  request.prompts = read_prompts(reader);
  if (!reader.ok()) return reader.error();
  return request;
}

ApiResult<ChatRequest> parse_chat_request(const Json& body, const ServerOptions& options) {
  if (!body.is_object()) return bad_request("request body must be a JSON object");
  FieldReader reader(body);
  ChatRequest request;
  request.params = read_common(body, reader, options, ApiKind::kChat);
  // max_completion_tokens is OpenAI's current name; max_tokens its deprecated alias.
  read_max_tokens(reader, request.params, reader.field("max_completion_tokens") ? "max_completion_tokens" : "max_tokens");
  const bool logprobs = reader.boolean("logprobs").value_or(false);
  std::optional<int64_t> top_logprobs = reader.integer_in("top_logprobs", 0, options.max_logprobs);
  if (top_logprobs && !logprobs) reader.fail("`top_logprobs` needs `logprobs` set to true", "top_logprobs");
  if (logprobs) request.params.logprobs = static_cast<int>(top_logprobs.value_or(0));
  if (reader.boolean("echo").value_or(false)) reader.fail("`echo` is not supported for chat completions", "echo");
  request.add_generation_prompt = reader.boolean("add_generation_prompt").value_or(true);
  request.continue_final_message = reader.boolean("continue_final_message").value_or(false);
  if (request.add_generation_prompt && request.continue_final_message) {
    reader.fail("`continue_final_message` and `add_generation_prompt` cannot both be true", "continue_final_message");
  }
  request.template_context = read_template_context(reader);
  request.messages = read_messages(reader);
  if (!reader.ok()) return reader.error();
  return request;
}

ApiResult<int> resolve_max_tokens(const GenerationParams& params, ApiKind kind, int prompt_len, int max_model_len,
                                  const SamplingDefaults& defaults) {
  if (prompt_len >= max_model_len) {
    return context_length_exceeded(fmt::format("This model's maximum context length is {} tokens. However, your "
                                               "request has {} input tokens. Please reduce the length of the input.",
                                               max_model_len, prompt_len),
                                   kind == ApiKind::kChat ? "messages" : "prompt");
  }
  const int room = max_model_len - prompt_len;
  if (params.max_tokens) {
    if (*params.max_tokens > room) {
      return context_length_exceeded(
          fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                      "{}, {} in the completion). Please reduce the length of the {} or completion.",
                      max_model_len, int64_t{prompt_len} + *params.max_tokens, prompt_len,
                      kind == ApiKind::kChat ? "messages" : "prompt", *params.max_tokens,
                      kind == ApiKind::kChat ? "messages" : "prompt"),
          "max_tokens");
    }
    return *params.max_tokens;
  }
  int max_tokens = kind == ApiKind::kCompletion ? std::min(16, room) : room;
  if (defaults.max_new_tokens) max_tokens = std::min(max_tokens, std::max(1, *defaults.max_new_tokens));
  return max_tokens;
}

std::optional<ApiError> check_token_ids(const std::vector<int32_t>& ids, int32_t vocab_size, const std::string& param) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return bad_request(fmt::format("token id {} in `{}` is out of vocabulary (size {})", id, param, vocab_size), param);
    }
  }
  return std::nullopt;
}

std::vector<GenerationRequest> make_generation_requests(const GenerationParams& params,
                                                        const std::vector<int32_t>& prompt_ids, int max_tokens,
                                                        const std::string& base_id, int first_index) {
  std::vector<GenerationRequest> requests;
  for (int choice = 0; choice < params.n; ++choice) {
    GenerationRequest request;
    request.request_id = fmt::format("{}-{}", base_id, first_index + choice);
    request.prompt_ids = prompt_ids;
    request.sampling = params.sampling;
    // Each choice draws its own stream, reproducibly (vLLM: seed + index for parallel samples).
    if (params.sampling.seed) request.sampling.seed = *params.sampling.seed + static_cast<uint64_t>(choice);
    request.stop = params.stop;
    request.stop.max_tokens = max_tokens;
    request.logprobs = params.logprobs;
    requests.push_back(std::move(request));
  }
  return requests;
}

}  // namespace moeserve
