// `moeserve bench serve`: vLLM's `vllm bench serve` against a running server — random token-id
// prompts of --random-input-len (± --random-range-ratio) asking --random-output-len tokens each,
// Poisson arrivals at --request-rate (inf: all at once) under --max-concurrency, a progress bar,
// and the summary vLLM prints (request and token throughput; TTFT, TPOT, ITL and E2E latency as
// mean, median, p99), also as --result-file JSON with vLLM's field names.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/bench_serve_client.h"
#include "cli/commands.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

struct BenchServeArgs {
  std::string base_url;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "/v1/completions";
  std::string model_dir;
  std::string served_model_name;
  int num_prompts = 1000;
  double request_rate = std::numeric_limits<double>::infinity();
  int max_concurrency = 0;
  int random_input_len = 1024;
  int random_output_len = 128;
  double random_range_ratio = 0.0;
  bool ignore_eos = false;
  double temperature = 0.0;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  uint64_t seed = 0;
  std::string result_file;
  bool disable_progress = false;
};

// "http://host:port" → host, port.
void parse_base_url(BenchServeArgs& args) {
  if (args.base_url.empty()) return;
  std::string rest = args.base_url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  else if (rest.find("://") != std::string::npos) fail("--base-url must be http://HOST:PORT, got " + args.base_url);
  rest = rest.substr(0, rest.find('/'));
  const size_t colon = rest.rfind(':');
  args.host = rest.substr(0, colon);
  args.port = colon == std::string::npos ? 80 : std::atoi(rest.c_str() + colon + 1);
  if (args.host.empty() || args.port <= 0) fail("--base-url must be http://HOST:PORT, got " + args.base_url);
}

std::vector<BenchPrompt> random_prompts(const BenchServeArgs& args, const Tokenizer& tokenizer) {
  std::mt19937_64 rng(args.seed);
  std::vector<int32_t> vocab;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.is_special(id)) vocab.push_back(id);
  }
  auto length = [&](int base) {
    const int low = std::max(1, static_cast<int>(std::floor(base * (1.0 - args.random_range_ratio))));
    const int high = std::max(low, static_cast<int>(std::ceil(base * (1.0 + args.random_range_ratio))));
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  std::uniform_int_distribution<size_t> pick(0, vocab.size() - 1);
  std::vector<BenchPrompt> prompts(args.num_prompts);
  for (BenchPrompt& prompt : prompts) {
    prompt.prompt_ids.resize(length(args.random_input_len));
    for (int32_t& id : prompt.prompt_ids) id = vocab[pick(rng)];
    prompt.max_tokens = length(args.random_output_len);
  }
  return prompts;
}

struct Stats {
  double mean = 0, median = 0, p99 = 0, std = 0;
};

Stats stats_ms(std::vector<double> seconds) {
  Stats out;
  if (seconds.empty()) return out;
  std::sort(seconds.begin(), seconds.end());
  const double n = static_cast<double>(seconds.size());
  out.mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / n * 1e3;
  const size_t mid = seconds.size() / 2;
  out.median = (seconds.size() % 2 ? seconds[mid] : 0.5 * (seconds[mid - 1] + seconds[mid])) * 1e3;
  // numpy.percentile's linear interpolation, as vLLM reports.
  const double rank = 0.99 * (n - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(seconds.size() - 1, below + 1);
  out.p99 = (seconds[below] + (seconds[above] - seconds[below]) * (rank - below)) * 1e3;
  double variance = 0;
  for (double value : seconds) variance += (value * 1e3 - out.mean) * (value * 1e3 - out.mean);
  out.std = std::sqrt(variance / n);
  return out;
}

void add_stats(nlohmann::json& result, const std::string& name, const Stats& stats) {
  result["mean_" + name + "_ms"] = stats.mean;
  result["median_" + name + "_ms"] = stats.median;
  result["p99_" + name + "_ms"] = stats.p99;
  result["std_" + name + "_ms"] = stats.std;
}

nlohmann::json summarize(const BenchServeArgs& args, const BenchServeRun& run) {
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t input_tokens = 0, output_tokens = 0;
  int completed = 0, failed = 0;
  std::vector<std::string> errors;
  for (const RequestRecord& record : run.records) {
    if (!record.success) {
      ++failed;
      if (errors.size() < 5) errors.push_back(record.error);
      continue;
    }
    ++completed;
    input_tokens += record.prompt_tokens;
    output_tokens += record.output_tokens;
    ttft.push_back(record.ttft);
    if (record.output_tokens > 1) tpot.push_back((record.e2e - record.ttft) / (record.output_tokens - 1));
    itl.insert(itl.end(), record.itl.begin(), record.itl.end());
    e2e.push_back(record.e2e);
  }
  const double duration = run.duration_seconds;
  nlohmann::json result = {
      {"num_prompts", args.num_prompts},
      {"request_rate", std::isfinite(args.request_rate) ? nlohmann::json(args.request_rate) : nlohmann::json("inf")},
      {"max_concurrency", args.max_concurrency > 0 ? nlohmann::json(args.max_concurrency) : nlohmann::json(nullptr)},
      {"random_input_len", args.random_input_len},
      {"random_output_len", args.random_output_len},
      {"duration", duration},
      {"completed", completed},
      {"failed", failed},
      {"errors", errors},
      {"total_input_tokens", input_tokens},
      {"total_output_tokens", output_tokens},
      {"request_throughput", completed / duration},
      {"output_throughput", output_tokens / duration},
      {"total_token_throughput", (input_tokens + output_tokens) / duration}};
  add_stats(result, "ttft", stats_ms(ttft));
  add_stats(result, "tpot", stats_ms(tpot));
  add_stats(result, "itl", stats_ms(itl));
  add_stats(result, "e2el", stats_ms(e2e));
  return result;
}

void print_summary(const nlohmann::json& r) {
  auto line = [](const char* name, const nlohmann::json& value) {
    if (value.is_number_float()) {
      std::printf("%-40s %-10.2f\n", name, value.get<double>());
    } else {
      std::printf("%-40s %-10s\n", name, value.is_string() ? value.get<std::string>().c_str() : value.dump().c_str());
    }
  };
  auto section = [&](const char* title, const char* key, const char* label) {
    std::printf("%s\n", title);
    for (const char* stat : {"mean", "median", "p99"}) {
      const std::string name = std::string(stat == std::string("p99") ? "P99" : stat == std::string("mean") ? "Mean"
                                                                                                             : "Median") +
                               " " + label + " (ms):";
      line(name.c_str(), r[std::string(stat) + "_" + key + "_ms"]);
    }
  };
  std::printf("============ Serving Benchmark Result ============\n");
  line("Successful requests:", r["completed"]);
  line("Failed requests:", r["failed"]);
  line("Maximum request concurrency:", r["max_concurrency"]);
  line("Benchmark duration (s):", r["duration"]);
  line("Total input tokens:", r["total_input_tokens"]);
  line("Total generated tokens:", r["total_output_tokens"]);
  line("Request throughput (req/s):", r["request_throughput"]);
  line("Output token throughput (tok/s):", r["output_throughput"]);
  line("Total Token throughput (tok/s):", r["total_token_throughput"]);
  section("---------------Time to First Token----------------", "ttft", "TTFT");
  section("-----Time per Output Token (excl. 1st token)------", "tpot", "TPOT");
  section("---------------Inter-token Latency----------------", "itl", "ITL");
  section("----------------End-to-end Latency----------------", "e2el", "E2EL");
  std::printf("==================================================\n");
}

void run_bench_serve_command(BenchServeArgs& args) {
  parse_base_url(args);
  if (args.num_prompts <= 0) fail("--num-prompts must be positive");
  if (args.random_input_len <= 0 || args.random_output_len <= 0) fail("--random-input-len/--random-output-len must be positive");
  auto tokenizer = Tokenizer::from_dir(args.model_dir);
  if (!tokenizer.ok()) fail("--model needs the model's tokenizer: " + tokenizer.error().message);
  // A server started with --api-key wants it on every /v1 request; vLLM's bench takes it from
  // OPENAI_API_KEY.
  const char* api_key_env = std::getenv("OPENAI_API_KEY");
  const std::string api_key = api_key_env != nullptr ? api_key_env : "";
  if (args.served_model_name.empty()) {
    auto models = http_get(args.host, args.port, "/v1/models", api_key);
    if (!models.ok()) fail(fmt::format("cannot reach the server at {}:{}: {}", args.host, args.port, models.error().message));
    const auto json = nlohmann::json::parse(*models, nullptr, false);
    if (json.is_discarded() || !json.contains("data") || json["data"].empty()) fail("/v1/models lists no model");
    args.served_model_name = json["data"][0].value("id", "");
  }
  const std::vector<BenchPrompt> prompts = random_prompts(args, **tokenizer);
  BenchServeConfig config{.host = args.host,
                          .port = args.port,
                          .endpoint = args.endpoint,
                          .model = args.served_model_name,
                          .request_rate = args.request_rate,
                          .max_concurrency = args.max_concurrency,
                          .ignore_eos = args.ignore_eos,
                          .seed = args.seed,
                          .temperature = args.temperature,
                          .top_p = args.top_p,
                          .top_k = args.top_k,
                          .min_p = args.min_p,
                          .api_key = api_key};
  // The bar redraws one line with \r: on a terminal only, never into a log file or pipe.
  const bool draw_progress = !args.disable_progress && isatty(STDERR_FILENO) == 1;
  auto progress = [&](int done, int total) {
    if (!draw_progress) return;
    const int width = 40, filled = done * width / total;
    std::fprintf(stderr, "\r[%s%s] %d/%d", std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 done, total);
    if (done == total) std::fprintf(stderr, "\n");
  };
  auto run = run_bench_serve(config, prompts, progress);
  if (!run.ok()) fail(run.error().message);
  nlohmann::json result = summarize(args, *run);
  result["model"] = args.served_model_name;
  result["base_url"] = fmt::format("http://{}:{}", args.host, args.port);
  result["temperature"] = args.temperature;
  if (args.top_p) result["top_p"] = *args.top_p;
  if (args.top_k) result["top_k"] = *args.top_k;
  if (args.min_p) result["min_p"] = *args.min_p;
  print_summary(result);
  write_result_json(args.result_file, result);
  if (result["completed"].get<int>() == 0) fail("every request failed");
}

}  // namespace

void add_bench_serve_command(CLI::App& bench) {
  auto args = std::make_shared<BenchServeArgs>();
  CLI::App* command = bench.add_subcommand("serve", "Load a running server like `vllm bench serve`");
  command->add_option("--base-url", args->base_url, "http://HOST:PORT of the server (overrides --host/--port)");
  command->add_option("--host", args->host);
  command->add_option("--port", args->port);
  command->add_option("--endpoint", args->endpoint, "API path (default /v1/completions)");
  command->add_option("--model", args->model_dir, "Model directory (its tokenizer draws the random prompts)")
      ->required();
  command->add_option("--served-model-name", args->served_model_name, "Name sent as \"model\" (default: the server's first)");
  command->add_option("--num-prompts", args->num_prompts, "Requests to send");
  command->add_option("--request-rate", args->request_rate, "Requests per second, Poisson arrivals (inf: all at once)");
  command->add_option("--max-concurrency", args->max_concurrency, "Requests in flight at most (0: unbounded)");
  command->add_option("--random-input-len", args->random_input_len, "Prompt tokens");
  command->add_option("--random-output-len", args->random_output_len, "max_tokens of each request");
  command->add_option("--random-range-ratio", args->random_range_ratio, "Lengths drawn from len × [1 - r, 1 + r]")
      ->check(CLI::Range(0.0, 1.0));
  command->add_flag("--ignore-eos", args->ignore_eos, "Ask for exactly max_tokens (ignore_eos)");
  command->add_option("--temperature", args->temperature, "Sampling temperature of every request (default 0: greedy)");
  command->add_option("--top-p", args->top_p, "top_p of every request (not sent unless given)");
  command->add_option("--top-k", args->top_k, "top_k of every request (not sent unless given)");
  command->add_option("--min-p", args->min_p, "min_p of every request (not sent unless given)");
  command->add_option("--seed", args->seed, "Seed of prompts and arrivals");
  command->add_option("--result-file", args->result_file, "Also write the summary as JSON here");
  command->add_flag("--disable-tqdm", args->disable_progress, "No progress bar");
  command->callback([args] { run_bench_serve_command(*args); });
}

}  // namespace moeserve::cli
