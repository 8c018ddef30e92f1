// The flags of `moeserve serve` beyond the shared engine flags, with vLLM's names and defaults,
// and the refusal of the vLLM flags moeserve does not implement yet (named, never ignored).
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "engine/engine.h"
#include "server/server_options.h"

namespace moeserve::cli {

// How the engine schedules and sizes its KV cache (serve and bench throughput).
struct SchedulingFlags {
  std::string tokenizer;  // --tokenizer DIR; empty = the model directory
  std::string generation_config = "auto";
  int max_model_len = 0;  // 0 = the model's max_position_embeddings
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int block_size = 16;
  bool enable_prefix_caching = true;
  int64_t kv_cache_bytes = int64_t{1} << 30;  // --kv-cache-memory (CPU KV budget)
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;
  bool enable_chunked_prefill = true;  // accepted; chunked prefill is how the scheduler works

  void add_to(CLI::App& command);
  // Refuses a --max-model-len above the model's max_position_embeddings (as vLLM does).
  Result<EngineConfig> engine_config(const ModelConfig& model) const;
};

struct ServeFlags {
  SchedulingFlags scheduling;
  std::string host = "0.0.0.0";
  int port = 8000;
  std::vector<std::string> served_model_names;
  std::string api_key;
  std::string chat_template;
  TokenizerMode tokenizer_mode = TokenizerMode::kAuto;        // --tokenizer-mode
  ReasoningParser reasoning_parser = ReasoningParser::kNone;  // --reasoning-parser
  bool enable_auto_tool_choice = false;                       // --enable-auto-tool-choice
  ToolCallParser tool_call_parser = ToolCallParser::kNone;    // --tool-call-parser
  bool disable_log_requests = false;
  int max_waiting_requests = 0;
  int max_logprobs = 20;
  double shutdown_timeout = 0;  // --shutdown-timeout seconds
  bool trust_remote_code = false;
  bool no_webui = false;  // --no-webui: no live page at / (and no /live stream)

  void add_to(CLI::App& command);
  // --enable-auto-tool-choice needs --tool-call-parser (as vLLM requires; a parser alone is unused).
  Status check() const;
  ServerOptions server_options(const std::string& model_dir) const;
};

// `extras`: what CLI11 left unparsed. Empty is fine; a vLLM flag moeserve lacks is refused by
// name with the supported list; anything else is an unknown argument.
Status refuse_unsupported_flags(const std::vector<std::string>& extras);

// "4GiB", "512M", "1073741824" → bytes.
Result<int64_t> parse_byte_size(const std::string& text);

}  // namespace moeserve::cli
