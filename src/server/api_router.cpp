// ApiRouter: routing, API key check, and the routes that answer at once (models, health,
// version, metrics, tokenize, detokenize). Generation routes live in generation_handlers.cpp.
#include "server/api_router.h"

#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/text_file.h"
#include "runtime/engine_failure.h"
#include "server/openai_responses.h"
#include "server/webui_assets.h"

namespace moeserve {
namespace {

// The template source: --chat-template FILE, else the model directory's (chat_template.jinja or
// tokenizer_config.json, as transformers picks), else what the tokenizer loaded.
Result<std::optional<std::string>> chat_template_source(const ServerOptions& options, const EngineClient& engine) {
  if (!options.chat_template_path.empty()) {
    Result<std::string> text = read_text_file(options.chat_template_path);
    if (!text.ok()) return make_error("--chat-template: {}", text.error().message);
    return std::optional<std::string>(std::move(text).value());
  }
  if (!engine.info().model_dir.empty()) {
    Result<chat::ChatTemplateConfig> config = chat::load_chat_template_config(engine.info().model_dir);
    if (config.ok()) return std::optional<std::string>(config->chat_template);
  }
  if (auto tokenizer = engine.tokenizer()) return tokenizer->chat_template();
  return std::optional<std::string>();
}

// The answer parsers against the model: GPT-OSS answers in harmony channels, which only
// openai_gptoss / openai read, and those two read nothing else.
Status check_answer_parsers(const ServerOptions& options, const EngineInfo& info, bool harmony) {
  const std::string name = info.architecture ? info.architecture_name : std::string("this model");
  if (harmony && options.reasoning_parser != ReasoningParser::kNone &&
      options.reasoning_parser != ReasoningParser::kOpenAiGptOss) {
    return make_error("--reasoning-parser: {} answers in GPT-OSS's harmony channels; use openai_gptoss (or leave the "
                      "flag out: a gpt-oss model's reasoning is split without it)",
                      name);
  }
  if (harmony && options.tool_call_parser != ToolCallParser::kNone && options.tool_call_parser != ToolCallParser::kOpenAi) {
    return make_error("--tool-call-parser: {} writes its tool calls in GPT-OSS's harmony format; use openai", name);
  }
  if (!harmony && options.reasoning_parser == ReasoningParser::kOpenAiGptOss) {
    return make_error("--reasoning-parser openai_gptoss reads GPT-OSS's harmony channels, and {} is not GPT-OSS", name);
  }
  if (!harmony && options.tool_call_parser == ToolCallParser::kOpenAi) {
    return make_error("--tool-call-parser openai reads GPT-OSS's harmony tool calls, and {} is not GPT-OSS", name);
  }
  return ok_status();
}

}  // namespace

Result<TokenizerMode> parse_tokenizer_mode(const std::string& name) {
  if (name == "auto" || name == "hf") return TokenizerMode::kAuto;
  if (name == "deepseek_v32") return TokenizerMode::kDeepseekV32;
  return make_error("'{}' is not supported (supported: auto, hf, deepseek_v32)", name);
}

namespace {

bool bearer_matches(const std::string& header, const std::string& key) {
  constexpr std::string_view kPrefix = "Bearer ";
  return header.size() == kPrefix.size() + key.size() && header.compare(0, kPrefix.size(), kPrefix) == 0 &&
         header.compare(kPrefix.size(), std::string::npos, key) == 0;
}

// nlohmann's parser recurses per nesting level; a hostile body of a million `[` would overflow
// the worker's stack, so nesting is bounded before parsing.
bool nesting_within(const std::string& text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (in_string) {
      if (c == '\\') {
        ++pos;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

ApiResult<Json> parse_json_body(const std::string& body) {
  // nlohmann's lexer takes a NUL byte for the end of input, so `{...}\0junk` would parse as the
  // object alone. No JSON text holds a raw NUL (not even inside a string), so any is an error:
  // the body must be exactly one JSON value, with only whitespace around it.
  if (const size_t nul = body.find('\0'); nul != std::string::npos) {
    return bad_request(fmt::format("request body is not valid JSON: NUL byte at offset {}; the body must be exactly "
                                   "one JSON value",
                                   nul));
  }
  constexpr int kMaxDepth = 256;
  if (!nesting_within(body, kMaxDepth)) {
    return bad_request(fmt::format("request body nests JSON deeper than {} levels", kMaxDepth));
  }
  try {
    return Json::parse(body);
  } catch (const nlohmann::json::exception& error) {
    return bad_request(fmt::format("request body is not valid JSON: {}", error.what()));
  }
}

ApiRouter::ApiRouter(const ServerOptions& options, EngineClient& engine, MetricsRegistry& metrics,
                     std::shared_ptr<IoDispatcher> dispatcher)
    : options_(options), engine_(engine), metrics_(metrics), dispatcher_(std::move(dispatcher)) {}

Result<std::unique_ptr<ApiRouter>> ApiRouter::create(const ServerOptions& options, EngineClient& engine,
                                                     MetricsRegistry& metrics, std::shared_ptr<IoDispatcher> dispatcher) {
  std::unique_ptr<ApiRouter> router(new ApiRouter(options, engine, metrics, std::move(dispatcher)));
  router->tokenizer_ = engine.tokenizer();
  if (router->tokenizer_ == nullptr) return make_error("the engine has no tokenizer");
  const EngineInfo& info = engine.info();
  router->harmony_ = info.architecture == Architecture::kGptOss;
  MS_RETURN_IF_ERROR(check_answer_parsers(options, info, router->harmony_));
  router->model_names_ = options.served_model_names;
  if (router->model_names_.empty()) router->model_names_.push_back(engine.info().model_dir);
  // The page says whether it needs the API key, so that it asks for it before opening /live
  // instead of meeting a 401.
  router->page_ = std::string(webui::kIndexHtml);
  constexpr std::string_view kAuthMarker = R"(<meta name="moeserve-auth" content="none">)";
  if (const size_t at = router->page_.find(kAuthMarker); at != std::string::npos && !options.api_key.empty()) {
    router->page_.replace(at, kAuthMarker.size(), R"(<meta name="moeserve-auth" content="api-key">)");
  }
  router->created_ =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  MS_ASSIGN_OR_RETURN(std::optional<std::string> source, chat_template_source(options, engine));
  // DeepSeek-V3.2 ships its encoder instead of a template: without one it is used as asked.
  router->deepseek_v32_encoding_ =
      options.tokenizer_mode == TokenizerMode::kDeepseekV32 ||
      (!source && info.architecture == Architecture::kDeepseekV32);
  if (router->deepseek_v32_encoding_) {
    spdlog::info("chat prompts: DeepSeek-V3.2's encoder ({})", options.tokenizer_mode == TokenizerMode::kDeepseekV32
                                                                   ? "--tokenizer-mode deepseek_v32"
                                                                   : "the model has no chat template");
  }
  if (source) {
    Result<chat::ChatTemplate> parsed = chat::ChatTemplate::parse(*source);
    if (!parsed.ok()) return parsed.error().with_context("parsing the chat template");
    router->chat_template_ = std::move(parsed).value();
  } else {
    router->no_template_reason_ =
        "this model has no chat template (none in tokenizer_config.json or chat_template.jinja); start the server "
        "with --chat-template FILE to use /v1/chat/completions";
  }
  return router;
}

std::optional<ApiError> ApiRouter::authorize(const std::string& path, const std::string& authorization) const {
  const bool protected_path = path.starts_with("/v1") || path == "/live";
  if (options_.api_key.empty() || !protected_path || bearer_matches(authorization, options_.api_key)) {
    return std::nullopt;
  }
  return unauthorized();
}

RouteOutcome ApiRouter::route(const HttpRequest& request) {
  std::optional<RouteOutcome> outcome = route_at_once(request);
  if (!outcome && request.path == "/metrics") outcome = respond(metrics());  // remote_metrics: fetched here
  if (!outcome) outcome = route_body(request);
  if (outcome->response.status == 503) {
    outcome->response.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
  }
  return std::move(*outcome);
}

HttpResponse ApiRouter::busy_response(bool large_body) const {
  HttpResponse response = error_response(service_unavailable(
      large_body ? fmt::format("The server is busy: {} requests of 1 MiB or more are already waiting to be parsed and "
                               "tokenized; retry later.",
                               options_.large_request_queue_limit)
                 : fmt::format("The server is busy: {} requests are already waiting to be parsed and tokenized; retry "
                               "later.",
                               options_.request_queue_limit)));
  response.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
  return response;
}

namespace {
struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                             {"/v1/models", "GET"},       {"/health", "GET"},
                             {"/version", "GET"},         {"/metrics", "GET"},
                             {"/tokenize", "POST"},       {"/detokenize", "POST"},
                             {"/", "GET"},                {"/live", "GET"}};
}  // namespace

std::optional<RouteOutcome> ApiRouter::route_at_once(const HttpRequest& request) {
  if (auto error = authorize(request.path, request.authorization)) return respond(error_response(*error));
  const Route* match = nullptr;
  for (const Route& route : kRoutes) {
    if (request.path == route.path) match = &route;
  }
  const bool webui_route = match != nullptr &&
                           (std::string_view(match->path) == "/" || std::string_view(match->path) == "/live");
  if (webui_route && !options_.enable_webui) {
    return respond(error_response(not_found("Route " + request.path + " not found: the web UI is off (--no-webui).")));
  }
  if (match == nullptr) return respond(error_response(not_found("Route " + request.path + " not found.")));
  // HEAD is GET without the body (RFC 9110 9.3.2): the route answers as for GET and the session
  // drops the body, keeping the headers (Content-Length included).
  const bool is_get_route = std::string_view(match->method) == "GET";
  if (request.method != match->method && !(is_get_route && request.method == "HEAD")) {
    HttpResponse response = error_response(method_not_allowed(request.method, request.path));
    response.headers.emplace_back("Allow", is_get_route ? "GET, HEAD" : match->method);
    return respond(std::move(response));
  }
  const std::string_view path = match->path;
  if (path == "/health") {
    // vLLM answers 503 once its engine is dead.
    if (const auto failure = engine_failure()) return respond(error_response(service_unavailable(*failure)));
    return respond(text_response(200, "", ""));
  }
  if (path == "/v1/models") return respond(models());
  if (path == "/version") return respond(version());
  if (path == "/metrics") {
    if (options_.remote_metrics) return std::nullopt;  // a round trip to the engine: on a worker
    return respond(metrics());
  }
  if (path == "/") return respond(web_page());
  if (path == "/live") {
    RouteOutcome outcome;
    outcome.live = true;
    return outcome;
  }
  return std::nullopt;  // a POST route: its body is parsed by route_body
}

RouteOutcome ApiRouter::route_body(const HttpRequest& request) {
  ApiResult<Json> body = parse_json_body(request.body);
  if (!body.ok()) return respond(error_response(body.error()));
  if (!body.value().is_object()) return respond(error_response(bad_request("request body must be a JSON object")));
  if (request.path == "/tokenize") return respond(tokenize(body.value()));
  if (request.path == "/detokenize") return respond(detokenize(body.value()));
  if (request.path == "/v1/completions") return completions(body.value());
  return chat_completions(body.value());
}

HttpResponse ApiRouter::models() const {
  Json data = Json::array();
  for (const std::string& name : model_names_) {
    Json card;
    card["id"] = name;
    card["object"] = "model";
    card["created"] = created_;
    card["owned_by"] = "moeserve";
    card["root"] = engine_.info().model_dir;
    card["parent"] = nullptr;
    card["max_model_len"] = engine_.info().max_model_len;
    data.push_back(std::move(card));
  }
  return json_response(200, dump_json(Json{{"object", "list"}, {"data", std::move(data)}}));
}

HttpResponse ApiRouter::version() const { return json_response(200, dump_json(Json{{"version", MOESERVE_VERSION}})); }

HttpResponse ApiRouter::metrics() const {
  if (options_.remote_metrics) {
    return text_response(200, MetricsRegistry::kContentType, options_.remote_metrics() + metrics_.render());
  }
  return text_response(200, MetricsRegistry::kContentType, metrics_.render());
}

HttpResponse ApiRouter::web_page() const {
  if (webui::kIndexHtml.empty()) {
    return error_response(not_found("this moeserve was built without its web UI (MOESERVE_WEBUI=OFF)"));
  }
  HttpResponse response = text_response(200, "text/html; charset=utf-8", page_);
  response.headers.emplace_back("Cache-Control", "no-cache");
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return response;
}

std::optional<ApiError> ApiRouter::check_model(const std::optional<std::string>& model) const {
  if (!model || model->empty()) return std::nullopt;
  for (const std::string& name : model_names_) {
    if (name == *model) return std::nullopt;
  }
  ApiError error = not_found(fmt::format("The model `{}` does not exist.", *model));
  error.param = "model";
  return error;
}

ApiResult<std::vector<int32_t>> ApiRouter::encode_counted(const std::string& text, bool add_special_tokens,
                                                          const std::string& param) const {
  // vLLM's /tokenize counts a prompt of any length (its response carries max_model_len for the
  // client to compare). Here it counts up to max_model_len tokens, the most any request can carry:
  // whether a prompt fits is answered the same, and the memory a request can take is bounded by
  // the context, not by the body.
  const int max_model_len = engine_.info().max_model_len;
  auto ids = tokenizer_->encode_within(text, add_special_tokens, static_cast<size_t>(std::max(0, max_model_len)));
  if (!ids.ok()) return bad_request("cannot tokenize `" + param + "`: " + ids.error().message, param);
  if (!ids.value()) {
    return context_length_exceeded(fmt::format("This model's maximum context length is {} tokens. However, your "
                                               "{} has more than that ({} bytes), and /tokenize counts up to {} "
                                               "tokens. Please reduce the length of the input.",
                                               max_model_len, param, text.size(), max_model_len),
                                   param);
  }
  return std::move(*ids.value());
}

ApiResult<std::vector<int32_t>> ApiRouter::encode_prompt(const std::string& text, bool add_special_tokens,
                                                         const std::string& param) const {
  const int max_model_len = engine_.info().max_model_len;
  // resolve_max_tokens refuses a prompt of max_model_len tokens or more; so does this, sooner.
  auto ids = tokenizer_->encode_within(text, add_special_tokens, static_cast<size_t>(std::max(0, max_model_len - 1)));
  if (!ids.ok()) return bad_request("cannot tokenize `" + param + "`: " + ids.error().message, param);
  if (!ids.value()) {
    return context_length_exceeded(fmt::format("This model's maximum context length is {} tokens. However, your "
                                               "request has more than that in its {} ({} bytes). Please reduce the "
                                               "length of the input.",
                                               max_model_len, param, text.size()),
                                   param);
  }
  return std::move(*ids.value());
}

HttpResponse ApiRouter::tokenize(const Json& body) const {
  FieldReader reader(body);
  std::optional<std::string> model = reader.string("model");
  const bool return_token_strs = reader.boolean("return_token_strs").value_or(false);
  std::string text;
  bool add_special_tokens = true;
  if (reader.field("messages") != nullptr) {
    // The chat form: the same rendering a chat completion would use.
    ServerOptions parse_options = options_;
    ApiResult<ChatRequest> chat = parse_chat_request(body, parse_options);
    if (!chat.ok()) return error_response(chat.error());
    ApiResult<std::string> rendered = render_chat(chat.value().messages, chat.value().add_generation_prompt,
                                                  chat.value().continue_final_message, chat.value().template_context);
    if (!rendered.ok()) return error_response(rendered.error());
    text = std::move(rendered).value();
    add_special_tokens = chat.value().params.add_special_tokens.value_or(false);
  } else {
    std::optional<std::string> prompt = reader.string("prompt");
    if (!prompt && reader.ok()) reader.fail("`prompt` or `messages` is required", "prompt");
    add_special_tokens = reader.boolean("add_special_tokens").value_or(true);
    if (!reader.ok()) return error_response(reader.error());
    text = std::move(*prompt);
  }
  if (!reader.ok()) return error_response(reader.error());
  if (auto error = check_model(model)) return error_response(*error);
  ApiResult<std::vector<int32_t>> ids =
      encode_counted(text, add_special_tokens, reader.field("messages") != nullptr ? "messages" : "prompt");
  if (!ids.ok()) return error_response(ids.error());
  Json out;
  out["count"] = ids.value().size();
  out["max_model_len"] = engine_.info().max_model_len;
  out["tokens"] = ids.value();
  if (return_token_strs) {
    Json strs = Json::array();
    for (int32_t id : ids.value()) strs.push_back(tokenizer_->id_to_token(id).value_or(""));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  return json_response(200, dump_json(out));
}

HttpResponse ApiRouter::detokenize(const Json& body) const {
  FieldReader reader(body);
  std::optional<std::string> model = reader.string("model");
  const Json* tokens = reader.field("tokens");
  if (tokens == nullptr && reader.ok()) reader.fail("`tokens` is required", "tokens");
  if (!reader.ok()) return error_response(reader.error());
  if (auto error = check_model(model)) return error_response(*error);
  std::vector<int32_t> ids;
  if (!tokens->is_array()) return error_response(bad_request("`tokens` must be an array of integers", "tokens"));
  for (const Json& item : *tokens) {
    std::optional<int64_t> id = json_integer(item);
    if (!id || *id < 0 || *id >= tokenizer_->vocab_size()) {
      return error_response(bad_request(
          fmt::format("`tokens` must hold token ids in [0, {}), got {}", tokenizer_->vocab_size(), item.dump()), "tokens"));
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return json_response(200, dump_json(Json{{"prompt", tokenizer_->decode(ids, false)}}));
}

}  // namespace moeserve
