// ApiRouter: the server's routes behind the HTTP layer. It checks the API key (on /v1/* only,
// as vLLM), maps method + path to a handler, and answers everything except generation directly;
// a completions/chat request comes back as a GenerationJob for the session to start and feed to
// its client. Two halves: authorize() and route_at_once() run on the io thread and never touch a
// body (the API key from the headers; health, models, version, metrics, an unknown route or
// method); route() does everything, body parsing, chat templating and tokenizing included, and
// runs on the request workers. Thread-safe: it holds only state that is read-only after create().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "server/generation_job.h"
#include "server/http_message.h"
#include "server/io_dispatcher.h"
#include "server/server_options.h"
#include "tokenizer/chat/chat_template.h"

namespace moeserve {

struct RouteOutcome {
  HttpResponse response;               // sent when `job` is null and `live` false
  std::shared_ptr<GenerationJob> job;  // a generation for the session to start
  bool live = false;                   // GET /live: the session subscribes to the live feed
};

inline RouteOutcome respond(HttpResponse response) { return RouteOutcome{std::move(response), nullptr}; }

class ApiRouter {
 public:
  // Loads the chat template (--chat-template FILE, else the model's); a model without one still
  // serves completions, and chat requests then get a 400 saying how to add one.
  static Result<std::unique_ptr<ApiRouter>> create(const ServerOptions& options, EngineClient& engine,
                                                   MetricsRegistry& metrics, std::shared_ptr<IoDispatcher> dispatcher);

  // The API key check, from the request's path and Authorization header alone (before its body
  // is read): 401 on a /v1 route or the live page's data stream (/live) without the right key.
  // The page itself (/) is public: it asks for the key.
  std::optional<ApiError> authorize(const std::string& path, const std::string& authorization) const;
  // The answer of a request that needs no work on its body; nullopt when it does (route()).
  std::optional<RouteOutcome> route_at_once(const HttpRequest& request);
  // The whole route: route_at_once, else parse the body and run the handler (a 503 gets
  // Retry-After). Called on the request workers.
  RouteOutcome route(const HttpRequest& request);
  // 503 + Retry-After: the workers' queue for this request is full.
  HttpResponse busy_response(bool large_body) const;
  EngineClient& engine() { return engine_; }

 private:
  ApiRouter(const ServerOptions& options, EngineClient& engine, MetricsRegistry& metrics,
            std::shared_ptr<IoDispatcher> dispatcher);

  RouteOutcome route_body(const HttpRequest& request);
  HttpResponse models() const;
  HttpResponse version() const;
  HttpResponse metrics() const;
  HttpResponse web_page() const;
  HttpResponse tokenize(const Json& body) const;
  HttpResponse detokenize(const Json& body) const;
  RouteOutcome completions(const Json& body);
  RouteOutcome chat_completions(const Json& body);

  // Shared by the handlers (generation_handlers.cpp).
  std::optional<ApiError> check_model(const std::optional<std::string>& model) const;
  // 503 when the request's sequences (prompts x n, each one engine request) would take the
  // engine's waiting sequences past --max-waiting-requests, or alone exceed it.
  std::optional<ApiError> check_capacity(size_t num_prompts, int n) const;
  ApiResult<std::string> render_chat(const Json& messages, bool add_generation_prompt, bool continue_final_message,
                                     const Json& template_context) const;
  // /tokenize's encode: the ids of a text of up to max_model_len tokens; a longer one gets
  // context_length_exceeded as soon as that is known, so a 30 MB body is never tokenized in full
  // (that took 0.29 -> 1.35 GB of memory per request).
  ApiResult<std::vector<int32_t>> encode_counted(const std::string& text, bool add_special_tokens,
                                                 const std::string& param) const;
  // A generation prompt: encode(), refused with context_length_exceeded as soon as it is known to
  // reach max_model_len (a 30 MB prompt is not tokenized in full to find that out).
  ApiResult<std::vector<int32_t>> encode_prompt(const std::string& text, bool add_special_tokens,
                                                const std::string& param) const;
  JobSpec job_spec(ApiKind kind, const GenerationParams& params) const;
  void log_request(const std::string& id, const JobSpec& spec) const;

  ServerOptions options_;
  EngineClient& engine_;
  MetricsRegistry& metrics_;
  std::shared_ptr<IoDispatcher> dispatcher_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::optional<chat::ChatTemplate> chat_template_;
  bool harmony_ = false;  // a GPT-OSS model: chat answers are split by HarmonySplitter
  // Chat prompts written by DeepSeek-V3.2's encoder instead of a template (--tokenizer-mode).
  bool deepseek_v32_encoding_ = false;
  std::string no_template_reason_;
  std::vector<std::string> model_names_;
  std::string page_;  // the live page (webui::kIndexHtml), with its API key marker set
  int64_t created_ = 0;
};

// Parses a request body as JSON; 400 with the parser's message when malformed.
ApiResult<Json> parse_json_body(const std::string& body);

}  // namespace moeserve
