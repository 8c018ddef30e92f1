// `moeserve perplexity MODEL --file TEXT [--ctx-size N] [--stride S] [--max-chunks K] [--json OUT]`
// (issue 21), like llama.cpp's llama-perplexity: the file is tokenized whole with the model's
// tokenizer (no special tokens), scored window by window (runtime/perplexity.h: each window
// starts with BOS when the tokenizer adds one, and every token is scored once, with at least
// ctx-size - stride tokens of context after the first window), and the result printed as
// "PPL = x.xxxx +/- err" (the standard error of the mean NLL propagated to the perplexity). The
// engine flags apply (--device, --dtype, the parallel ones), so the same text measures what a
// precision option costs. Progress goes to stderr, one line per window; the result to stdout.
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/text_file.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/flag_checks.h"
#include "runtime/make_runner.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

constexpr int kDefaultCtxSize = 512;

struct PerplexityArgs {
  EngineFlags engine;
  std::string file;
  int ctx_size = 0;    // 0: min(512, max_position_embeddings)
  int stride = 0;      // 0: ctx_size / 2
  int max_chunks = 0;  // 0: all
  std::string json;
};

// The whole file (a regular one: a FIFO or directory is refused by name), refused when empty.
std::string read_text_or_fail(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) fail(text.error().message);
  if (text->empty()) fail(path + " is empty");
  return std::move(*text);
}

std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& dir) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    fail(dir + " has no tokenizer.json: perplexity tokenizes the text with the model's tokenizer");
  }
  auto tokenizer = Tokenizer::from_dir(dir);
  if (!tokenizer.ok()) fail(tokenizer.error().message);
  return *tokenizer;
}

// The BOS each window starts with: the tokenizer's, when its encode() with special tokens adds it.
std::optional<int32_t> window_bos(const Tokenizer& tokenizer) {
  const std::optional<int32_t> bos = tokenizer.bos_token_id();
  if (!bos) return std::nullopt;
  auto with_special = tokenizer.encode("", /*add_special_tokens=*/true);
  if (!with_special.ok() || with_special->empty() || with_special->front() != *bos) return std::nullopt;
  return bos;
}

// NaN (one scored token: no spread) is written as null.
nlohmann::json finite_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nullptr; }

void run_perplexity(const PerplexityArgs& args) {
  const std::string text = read_text_or_fail(args.file);
  auto spec = args.engine.runner_spec();  // config.json, read once
  if (!spec.ok()) fail(spec.error().message);
  const int max_model_len = spec->config.max_position_embeddings;
  int ctx_size = args.ctx_size;
  if (ctx_size == 0) ctx_size = max_model_len > 0 ? std::min(kDefaultCtxSize, max_model_len) : kDefaultCtxSize;
  if (ctx_size < 2) fail(fmt::format("--ctx-size must be at least 2, got {}", ctx_size));
  if (max_model_len > 0 && ctx_size > max_model_len) {
    fail(fmt::format("--ctx-size {} is above the model's max-model-len ({}, max_position_embeddings)", ctx_size,
                     max_model_len));
  }
  const int stride = args.stride > 0 ? args.stride : std::max(1, ctx_size / 2);
  if (stride > ctx_size - 1) {
    fail(fmt::format("--stride must be between 1 and --ctx-size - 1 ({}), got {}", ctx_size - 1, stride));
  }

  const auto tokenizer = load_tokenizer(args.engine.model_dir);
  auto ids = tokenizer->encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) fail(fmt::format("tokenizing {}: {}", args.file, ids.error().message));
  if (ids->size() < 2) {
    fail(fmt::format("{} has {} token(s); perplexity needs at least 2", args.file, ids->size()));
  }
  const PerplexityOptions options{
      .ctx_size = ctx_size, .stride = stride, .bos_id = window_bos(*tokenizer), .max_windows = args.max_chunks};

  auto choice = choose_backend(spec->device, spec->load.dtype);
  if (!choice.ok()) fail(choice.error().message);
  auto backend = make_sequence_backend(*spec, ctx_size);
  if (!backend.ok()) fail(backend.error().message);
  const WindowRunner run_window = sequence_window_runner((*backend)->runner());

  std::fprintf(stderr, "perplexity: %zu tokens, ctx-size %d, stride %d, %s, %s backend\n", ids->size(), ctx_size,
               stride, options.bos_id ? "BOS starts each window" : "no BOS", backend_name(choice->backend));
  const auto start = std::chrono::steady_clock::now();
  auto result = compute_perplexity(*ids, options, run_window, [](const WindowReport& report) {
    std::fprintf(stderr, "[%lld/%lld] tokens %lld-%lld: scored %lld, window ppl %.4f, running ppl %.4f\n",
                 static_cast<long long>(report.index + 1), static_cast<long long>(report.total),
                 static_cast<long long>(report.window.begin), static_cast<long long>(report.window.end),
                 static_cast<long long>(report.window_stats.count), report.window_stats.perplexity(),
                 report.running.perplexity());
  });
  if (!result.ok()) fail(result.error().message);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const NllStats& stats = result->stats;

  std::printf("PPL = %.4f +/- %.5f\n", stats.perplexity(), stats.perplexity_stderr());
  std::printf("NLL = %.6f +/- %.6f nats/token\n", stats.mean, stats.mean_stderr());
  std::printf("tokens scored: %lld of %zu, in %lld of %lld windows (%.1f s)\n", static_cast<long long>(stats.count),
              ids->size(), static_cast<long long>(result->windows_run), static_cast<long long>(result->windows_total),
              seconds);
  write_result_json(args.json,
                    nlohmann::json{
                        {"model", args.engine.model_id},
                        {"file", args.file},
                        {"tokens", ids->size()},
                        {"tokens_scored", stats.count},
                        {"ctx_size", ctx_size},
                        {"stride", stride},
                        {"bos", options.bos_id.has_value()},
                        {"windows", result->windows_run},
                        {"windows_total", result->windows_total},
                        {"ppl", stats.perplexity()},
                        {"ppl_stderr", finite_or_null(stats.perplexity_stderr())},
                        {"nll_mean", stats.mean},
                        {"nll_stderr", finite_or_null(stats.mean_stderr())},
                        {"dtype", args.engine.dtype},
                        {"device", backend_name(choice->backend)},
                        {"load_format", args.engine.load_format},
                        {"quantization", args.engine.quantization.empty() ? nlohmann::json()
                                                                          : nlohmann::json(args.engine.quantization)},
                        {"kv_cache_dtype", args.engine.kv_cache_dtype},
                        {"seconds", seconds},
                    });
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* command =
      app.add_subcommand("perplexity", "Perplexity of a model on a text file (strided windows, like llama-perplexity)");
  args->engine.add_to(*command, /*with_parallel=*/true);
  command->add_option("--file", args->file, "Text file to score (tokenized whole, no special tokens)")->required();
  command
      ->add_option("--ctx-size", args->ctx_size,
                   "Tokens per window, BOS included (default: min(512, max_position_embeddings))")
      ->check(int_in_range(2, INT_MAX, "an integer >= 2", "INT>=2"));
  command
      ->add_option("--stride", args->stride,
                   "Tokens each window moves on and scores; the rest is context (default: ctx-size / 2)")
      ->check(positive_int());
  command->add_option("--max-chunks", args->max_chunks, "Score only the first K windows (default: all)")
      ->check(positive_int());
  command->add_option("--json", args->json,
                      "Also write the result as JSON (model, file, tokens, ctx_size, stride, ppl, nll_mean, "
                      "nll_stderr, dtype, ...)");
  command->callback([args] { run_perplexity(*args); });
}

}  // namespace moeserve::cli
