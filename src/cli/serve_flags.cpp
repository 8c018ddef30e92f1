#include "cli/serve_flags.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include <spdlog/spdlog.h>

#include "cli/flag_checks.h"

namespace moeserve::cli {

namespace {

// vLLM serve flags that moeserve recognises but does not implement yet.
constexpr std::array kNotYetImplemented = {"--pipeline-parallel-size",
                                           "-pp",
                                           "--speculative-config",
                                           "--enable-lora",
                                           "--lora-modules",
                                           "--cpu-offload-gb",
                                           "--swap-space",
                                           "--no-enable-chunked-prefill",
                                           "--max-num-partial-prefills",
                                           "--limit-mm-per-prompt",
                                           "--rope-scaling",
                                           "--override-generation-config",
                                           "--ssl-keyfile",
                                           "--ssl-certfile",
                                           "--root-path",
                                           "--middleware",
                                           "--uvicorn-log-level",
                                           "--data-parallel-rank",
                                           "--data-parallel-hybrid-lb",
                                           "--data-parallel-external-lb",
                                           "--data-parallel-backend"};

constexpr const char* kSupported =
    "--host, --port, --served-model-name, --api-key, --chat-template, --tokenizer-mode, --reasoning-parser, --enable-auto-tool-choice, --tool-call-parser, "
    "--generation-config, "
    "--disable-log-requests, --max-model-len, --max-num-seqs, --max-num-batched-tokens, --block-size, "
    "--enable-prefix-caching/--no-enable-prefix-caching, --kv-cache-memory, --gpu-memory-utilization, "
    "--max-logprobs, --tokenizer, --enforce-eager, --enable-chunked-prefill, --trust-remote-code, --seed, --dtype, "
    "--load-format, --quantization/-q, --kv-cache-dtype, --hf-overrides, --device, --threads, --max-waiting-requests, --tensor-parallel-size/-tp, "
    "--data-parallel-size/-dp, --enable-expert-parallel, --all2all-backend, --expert-placement-strategy, "
    "--enable-eplb, --eplb-config, --distributed-executor-backend, --data-parallel-size-local, "
    "--data-parallel-start-rank, --data-parallel-address, --data-parallel-rpc-port, --headless, --api-server-count, "
    "--log-level, --revision, --download-dir, --shutdown-timeout, --no-webui";

// An option whose value is a name `parse` turns into `target` (a parser kind); a name it refuses
// is a usage error with its message.
template <typename T>
void add_named_option(CLI::App& command, const char* flag, T& target, Result<T> (*parse)(const std::string&),
                      const char* help) {
  command.add_option_function<std::string>(
      flag,
      [flag, &target, parse](const std::string& name) {
        auto parsed = parse(name);
        if (!parsed.ok()) throw CLI::ValidationError(flag, parsed.error().message);
        target = *parsed;
      },
      help);
}

}  // namespace

void SchedulingFlags::add_to(CLI::App& command) {
  command.add_option("--tokenizer", tokenizer, "Directory of the tokenizer files (default: the model directory)");
  command.add_option("--generation-config", generation_config,
                     "auto: the model's generation_config.json; vllm: none; or a directory holding one");
  command.add_option("--max-model-len", max_model_len, "Context length (default: max_position_embeddings)")
      ->check(non_negative_int());
  command.add_option("--max-num-seqs", max_num_seqs, "Sequences in one step at most")->check(positive_int());
  command.add_option("--max-num-batched-tokens", max_num_batched_tokens, "Tokens in one step at most")
      ->check(positive_int());
  command.add_option("--block-size", block_size, "Tokens per KV-cache block")->check(CLI::Range(1, 1024));
  command.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", enable_prefix_caching,
                   "Reuse KV blocks of repeated prompt prefixes (default on)");
  command.add_option_function<std::string>(
      "--kv-cache-memory",
      [this](const std::string& text) {
        auto bytes = parse_byte_size(text);
        if (!bytes.ok()) throw CLI::ValidationError("--kv-cache-memory", bytes.error().message);
        kv_cache_bytes = *bytes;
      },
      "CPU KV-cache budget in bytes (suffixes K/M/G/KiB/MiB/GiB; default 1GiB)");
  command
      .add_option("--gpu-memory-utilization", gpu_memory_utilization,
                  "Fraction of GPU memory to use (GPU backends; the CPU uses --kv-cache-memory)")
      ->check(number_in_range(0.01, 1.0, "a number from 0.01 to 1", "FLOAT in [0.01 - 1]"));
  command.add_flag("--enforce-eager", enforce_eager, "No CUDA graphs: every decode step launches its kernels one by one (the CPU backend always does)");
  command.add_flag("--enable-chunked-prefill", enable_chunked_prefill, "Always on: long prompts are prefilled in chunks");
}

void ServeFlags::add_to(CLI::App& command) {
  scheduling.add_to(command);
  command.add_option("--host", host, "Address to listen on (vLLM's default: all interfaces)");
  command.add_option("--port", port, "Port to listen on (0: any free port)")->check(CLI::Range(0, 65535));
  // An empty name would be listed by /v1/models as "" and reported in the metrics' model_name
  // label; a request's "model": "" already means "the served model".
  command
      .add_option("--served-model-name", served_model_names,
                  "Model name(s) clients may ask for; the first is reported (default: the model path)")
      ->check(CLI::Validator(
          [](std::string& name) -> std::string {
            if (name.find_first_not_of(" \t") != std::string::npos) return {};
            return "must not be empty (leave out --served-model-name to serve the model under its path)";
          },
          "NAME"));
  // An empty key would switch authentication off while the operator believes it on.
  command.add_option("--api-key", api_key, "Require 'Authorization: Bearer KEY' on /v1/*")
      ->check(CLI::Validator(
          [](std::string& key) -> std::string {
            if (key.find_first_not_of(" \t") != std::string::npos) return {};
            return "must not be empty (an empty key would turn authentication off; leave out --api-key to serve "
                   "without one)";
          },
          "KEY"));
  command.add_option("--chat-template", chat_template, "Jinja chat template file (default: the tokenizer's)");
  add_named_option(command, "--tokenizer-mode", tokenizer_mode, parse_tokenizer_mode,
                   "How chat prompts are written: auto or hf (the chat template; a DeepSeek-V3.2 model without "
                   "one gets its published encoder), deepseek_v32 (DeepSeek-V3.2's encoder)");
  add_named_option(command, "--reasoning-parser", reasoning_parser, parse_reasoning_parser,
                   "Split chat answers' <think>...</think> into the message's `reasoning` (and "
                   "`reasoning_content`): deepseek_r1, qwen3, deepseek_v3 (thinking when "
                   "chat_template_kwargs.thinking is true); openai_gptoss (GPT-OSS's analysis channel, "
                   "split for a gpt-oss model without the flag too)");
  command.add_flag("--enable-auto-tool-choice", enable_auto_tool_choice,
                   "Parse tool calls out of chat answers to requests with tools (needs --tool-call-parser)");
  add_named_option(
      command, "--tool-call-parser", tool_call_parser, parse_tool_call_parser,
      "The tool-call markup to parse: hermes (Qwen2.5/Qwen3), qwen3_coder, deepseek_v3, deepseek_v31, "
      "deepseek_v32 (DSML), kimi_k2, llama3_json / llama4_json (Llama 3.1-3.3, Llama 4), "
      "pythonic / llama4_pythonic, openai (GPT-OSS's harmony calls)");
  command.add_flag("--disable-log-requests", disable_log_requests, "Do not log each request");
  command.add_option("--max-waiting-requests", max_waiting_requests,
                     "Waiting sequences at most (prompts x n per request); beyond, 503 with Retry-After (0: no bound)")
      ->check(non_negative_int());
  command.add_option("--max-logprobs", max_logprobs, "Largest logprobs/top_logprobs a request may ask")
      ->check(CLI::Range(0, 20));
  command.add_option("--shutdown-timeout", shutdown_timeout,
                     "On SIGTERM/SIGINT, seconds the requests in flight get to finish before they end with a "
                     "503 error (0: at once; a second signal also ends them at once)")
      ->check(non_negative_number());
  command.add_flag("--no-webui", no_webui,
                   "Do not serve the live page at / nor its data stream /live (as llama.cpp's --no-webui)");
  command.add_flag("--trust-remote-code", trust_remote_code,
                   "Accepted for vLLM compatibility; moeserve never runs code from a model repository");
}

Result<EngineConfig> SchedulingFlags::engine_config(const ModelConfig& model) const {
  // As vLLM: positions past the model's max_position_embeddings were never trained, so a longer
  // context is refused, not silently served. A deliberate override goes through the config.
  if (max_model_len > model.max_position_embeddings) {
    return make_error("--max-model-len {} is greater than the model's max_position_embeddings {} (config.json): "
                      "use --max-model-len {} or less (to override the model's limit on purpose: --hf-overrides "
                      "'{{\"max_position_embeddings\": {}}}')",
                      max_model_len, model.max_position_embeddings, model.max_position_embeddings, max_model_len);
  }
  EngineConfig config;
  config.scheduler.max_model_len = max_model_len > 0 ? max_model_len : model.max_position_embeddings;
  config.scheduler.max_num_seqs = max_num_seqs;
  config.scheduler.max_num_batched_tokens = max_num_batched_tokens;
  config.enable_prefix_caching = enable_prefix_caching;
  return config;
}

ServerOptions ServeFlags::server_options(const std::string& model_dir) const {
  ServerOptions options;
  options.host = host;
  options.port = port;
  options.served_model_names = served_model_names;
  if (options.served_model_names.empty()) options.served_model_names.push_back(model_dir);
  options.api_key = api_key;
  options.chat_template_path = chat_template;
  options.tokenizer_mode = tokenizer_mode;
  options.reasoning_parser = reasoning_parser;
  if (enable_auto_tool_choice) options.tool_call_parser = tool_call_parser;
  options.disable_log_requests = disable_log_requests;
  options.max_waiting_requests = max_waiting_requests;
  options.max_logprobs = max_logprobs;
  options.shutdown_timeout_s = shutdown_timeout;
  options.enable_webui = !no_webui;
  return options;
}

Status ServeFlags::check() const {
  if (enable_auto_tool_choice && tool_call_parser == ToolCallParser::kNone) {
    return make_error(
        "--enable-auto-tool-choice needs --tool-call-parser (hermes, qwen3_coder, deepseek_v3, deepseek_v31, deepseek_v32, "
        "kimi_k2, llama3_json, llama4_json, pythonic, llama4_pythonic, openai)");
  }
  return ok_status();
}

Status refuse_unsupported_flags(const std::vector<std::string>& extras) {
  if (extras.empty()) return ok_status();
  for (const std::string& extra : extras) {
    const std::string name = extra.substr(0, extra.find('='));
    if (std::find(kNotYetImplemented.begin(), kNotYetImplemented.end(), name) != kNotYetImplemented.end()) {
      return make_error("moeserve serve does not implement vLLM's {} yet; supported: {}", name, kSupported);
    }
  }
  return make_error("unknown argument '{}' (supported: {})", extras.front(), kSupported);
}

Result<int64_t> parse_byte_size(const std::string& text) {
  int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data() || value <= 0) {
    return make_error("'{}' is not a positive byte size (e.g. 4GiB, 512M, 1073741824)", text);
  }
  std::string suffix(ptr, text.data() + text.size());
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  int shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "k" || suffix == "kb" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
    shift = 30;
  } else {
    return make_error("'{}': unknown size suffix '{}' (K, M, G, KiB, MiB, GiB)", text, suffix);
  }
  if (value > (INT64_MAX >> shift)) return make_error("'{}' is too large", text);
  return value << shift;
}

}  // namespace moeserve::cli
