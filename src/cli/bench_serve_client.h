// The load generator behind `moeserve bench serve` (vLLM's `vllm bench serve`): sends streaming
// completion requests to a running server from one io thread (Asio coroutines, a connection per
// request), with Poisson arrivals or all at once, a concurrency cap, and records each request's
// time to first token, inter-token gaps and end-to-end latency from the SSE stream.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <optional>
#include <vector>

#include "base/result.h"

namespace moeserve::cli {

struct BenchServeConfig {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "/v1/completions";
  std::string model;                 // the "model" field of each request
  double request_rate = 0.0;         // requests/s, Poisson; <= 0 or inf: all at once
  int max_concurrency = 0;           // 0 = unbounded
  bool ignore_eos = false;
  uint64_t seed = 0;
  double timeout_seconds = 600.0;    // per request
  // Sampling of every request (vLLM bench serve's --temperature/--top-p/--top-k/--min-p):
  // greedy unless set; the filters are sent only when given.
  double temperature = 0.0;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  // Sent as "Authorization: Bearer KEY" when set (vLLM's bench reads it from OPENAI_API_KEY).
  std::string api_key;
};

struct BenchPrompt {
  std::vector<int32_t> prompt_ids;
  int max_tokens = 0;
};

// One request as the client saw it. Times in seconds from the request's send.
struct RequestRecord {
  bool success = false;
  std::string error;
  int prompt_tokens = 0;
  int output_tokens = 0;       // from the server's usage when given, else the chunks counted
  double ttft = 0.0;           // first token
  double e2e = 0.0;            // last byte
  std::vector<double> itl;     // gaps between token-bearing chunks
  std::string text;
};

struct BenchServeRun {
  std::vector<RequestRecord> records;  // in prompt order
  double duration_seconds = 0.0;       // first send to last completion
};

// Runs every prompt against the server; `on_done(completed, total)` after each request
// (for a progress bar). Fails only when the server cannot be resolved.
Result<BenchServeRun> run_bench_serve(const BenchServeConfig& config, const std::vector<BenchPrompt>& prompts,
                                      const std::function<void(int, int)>& on_done);

// GET `path` on host:port; the body of a 200 response, else an error.
Result<std::string> http_get(const std::string& host, int port, const std::string& path,
                             const std::string& api_key = "");

}  // namespace moeserve::cli
