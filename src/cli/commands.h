// The moeserve subcommands. Each lives in its own cmd_<name>.cpp and registers itself on the
// root app; main.cpp calls every add_*_command below. A command's callback reports a user error
// by printing it and throwing CLI::RuntimeError(exit_code).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace moeserve::cli {

void add_logits_command(CLI::App& app);
// `perplexity` (cmd_perplexity.cpp): a model's perplexity on a text file.
void add_perplexity_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_chat_template_command(CLI::App& app);
// Registers both `tokenize` and `detokenize` (cmd_tokenize.cpp).
void add_tokenize_command(CLI::App& app);
// `plan` (cmd_plan.cpp): deployment sizing from the memory model in src/plan/.
void add_plan_command(CLI::App& app);
// `serve` (cmd_serve.cpp): the OpenAI-compatible server.
void add_serve_command(CLI::App& app);
// `bench serve` (cmd_bench_serve.cpp) and `bench throughput` (cmd_bench_throughput.cpp), under `bench`.
void add_bench_serve_command(CLI::App& bench);
void add_bench_throughput_command(CLI::App& bench);
// `bench tokenize` (cmd_bench_tokenize.cpp): tokenizer encode throughput.
void add_bench_tokenize_command(CLI::App& bench);

// Prints "moeserve: error: <message>" to stderr and exits the command with status 1.
[[noreturn]] void fail(const std::string& message);

// Writes `result` (pretty-printed JSON) to `path` when it is not empty; fails the command when
// the file cannot be written. The benchmarks' --output-json / --result-file.
void write_result_json(const std::string& path, const nlohmann::json& result);

}  // namespace moeserve::cli
