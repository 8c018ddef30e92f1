// ServerOptions: what the `serve` command hands the HTTP server (vLLM's flag names in the
// comments). SamplingDefaults: the per-model defaults (generation_config.json) that apply when
// a request leaves a sampling field unset; unset here means vLLM's neutral default.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "server/reasoning_parser.h"
#include "server/tool_call_parser.h"

namespace moeserve {

struct SamplingDefaults {
  std::optional<float> temperature;         // else 1.0
  std::optional<float> top_p;               // else 1.0
  std::optional<int> top_k;                 // else 0 (disabled)
  std::optional<float> min_p;               // else 0.0
  std::optional<float> repetition_penalty;  // else 1.0
  // generation_config.json's max_new_tokens: caps the default max_tokens, as vLLM does.
  std::optional<int> max_new_tokens;
};

// vLLM's --tokenizer-mode: how chat prompts are written. kAuto: the chat template (a
// DeepSeek-V3.2 model without one gets its published encoder); kDeepseekV32: that encoder
// (tokenizer/chat/deepseek_v32_encoding.h) for any model.
enum class TokenizerMode { kAuto, kDeepseekV32 };
Result<TokenizerMode> parse_tokenizer_mode(const std::string& name);

struct ServerOptions {
  std::string host = "127.0.0.1";  // --host
  int port = 8000;                 // --port (0: an ephemeral port, see HttpServer::port())
  // --served-model-name (several allowed; the first is the one responses report). Empty: the
  // engine's model directory.
  std::vector<std::string> served_model_names;
  std::string api_key;             // --api-key; empty = no check. Checked on /v1/* only.
  std::string chat_template_path;  // --chat-template FILE; empty = the tokenizer's template
  TokenizerMode tokenizer_mode = TokenizerMode::kAuto;  // --tokenizer-mode
  ReasoningParser reasoning_parser = ReasoningParser::kNone;  // --reasoning-parser
  // --enable-auto-tool-choice with --tool-call-parser: answers to requests with tools (and
  // tool_choice not "none") have their tool-call markup parsed into tool_calls.
  ToolCallParser tool_call_parser = ToolCallParser::kNone;
  bool disable_log_requests = false;
  size_t max_body_bytes = size_t{32} << 20;  // larger request bodies get 413
  // Bound on the engine's waiting sequences (each choice of each prompt is one): a generation
  // request whose prompts x n would take them past it gets 503 with Retry-After. 0 = no bound.
  int max_waiting_requests = 0;
  int retry_after_seconds = 1;
  int idle_timeout_seconds = 60;  // a keep-alive connection with no request for this long closes
  int max_logprobs = 20;          // vLLM's --max-logprobs
  // While accept() keeps failing (out of file descriptors), it is retried every 100 ms but
  // logged at most once per this many seconds, with the count of the failures in between.
  double accept_error_log_interval_s = 10;
  // --shutdown-timeout: on SIGTERM/SIGINT, requests in flight get this long to finish before
  // each is ended with a 503 error (a stream: an error event, then [DONE]). 0: at once.
  double shutdown_timeout_s = 0;
  SamplingDefaults sampling_defaults;
  // The live page at `/` and its data stream GET /live (server/live_feed.h); --no-webui turns
  // both off (404). The stream pushes one event per live_interval_s.
  bool enable_webui = true;
  double live_interval_s = 1.0;
  // The request workers (server/request_workers.h), the threads that parse request bodies, render
  // chat templates and tokenize: how many (0: max(2, hardware threads / 2), at most 8), and how
  // many requests may wait for one, small bodies and bodies of 1 MiB or more, before the next gets
  // 503. No flags: these defaults are meant to fit every deployment.
  int request_threads = 0;
  size_t request_queue_limit = 1024;
  size_t large_request_queue_limit = 8;
  // SO_REUSEPORT on the listening socket: the API-server processes of --api-server-count N > 1
  // each listen on the same --host/--port and the kernel spreads the connections among them.
  bool reuse_port = false;
  // Header lines ("Name: value\r\n") on every response: an API-server process's
  // `x-moeserve-api-server: <index>` (--api-server-count N > 1).
  std::string response_headers;
  // In an API-server process (src/apiserver/): the engine process's metrics (vLLM's engine
  // metrics, the EP counters), fetched over the engine channel and served ahead of this
  // process's own in /metrics, which is then answered on a request worker (the fetch waits).
  std::function<std::string()> remote_metrics;
  // Tests only: called on the worker with each request's path and body before it is handled.
  std::function<void(const std::string& path, const std::string& body)> test_worker_hook;
};

}  // namespace moeserve
