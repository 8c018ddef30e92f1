// moeserve's entry point: flag parsing and wiring only; the work lives in the libraries.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apiserver/api_servers.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "runtime/make_runner.h"
#include "runtime/process_ranks.h"

namespace moeserve::cli {

void fail(const std::string& message) {
  std::fprintf(stderr, "moeserve: error: %s\n", message.c_str());
  throw CLI::RuntimeError(1);
}

void write_result_json(const std::string& path, const nlohmann::json& result) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << result.dump(2) << "\n";
  if (!out) fail("cannot write " + path);
}

}  // namespace moeserve::cli

int main(int argc, char** argv) {
  using namespace moeserve::cli;
  // Logs on stderr, so a command's result on stdout (generate --json, logits, perplexity, plan
  // --json) stays machine-readable whatever is logged.
  spdlog::set_default_logger(spdlog::stderr_color_mt("moeserve"));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  // The hidden subcommand of --distributed-executor-backend mp: a rank's worker process, started
  // by the engine (runtime/process_ranks.h), never by hand.
  if (argc == 3 && std::string_view(argv[1]) == "_worker") return moeserve::run_rank_worker(argv[2]);
  // The hidden subcommand of --api-server-count N > 1: one API-server process, started by
  // `serve` (apiserver/api_servers.h), never by hand.
  if (argc == 3 && std::string_view(argv[1]) == "_api_server") return moeserve::run_api_server(argv[2]);
  CLI::App app{"moeserve: inference and serving for Mixture-of-Experts LLMs"};
  app.set_version_flag("--version", fmt::format("moeserve {} (backends: {})", MOESERVE_VERSION, moeserve::backend_names()));
  app.require_subcommand(1);
  add_logits_command(app);
  add_perplexity_command(app);
  add_generate_command(app);
  add_chat_template_command(app);
  add_bench_command(app);
  add_tokenize_command(app);
  add_plan_command(app);
  add_serve_command(app);
  std::vector<std::string> args = expand_vllm_short_flags(argc, argv);  // -tp, -dp
  std::vector<char*> arg_ptrs;
  for (std::string& arg : args) arg_ptrs.push_back(arg.data());
  CLI11_PARSE(app, static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  return 0;
}
