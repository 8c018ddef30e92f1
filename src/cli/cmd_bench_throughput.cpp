// `moeserve bench throughput MODEL_DIR --input-len N --output-len N --num-prompts N`: vLLM's
// offline `bench throughput` — every request submitted at once to the engine (no HTTP), random
// token-id prompts, exactly output-len tokens each (ignore_eos), and the engine's request and
// token throughput over the whole run. Takes the engine, parallel and scheduling flags of `serve`.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/engine_setup.h"

namespace moeserve::cli {

namespace {

struct ThroughputArgs {
  EngineFlags engine;
  SchedulingFlags scheduling;
  int input_len = 1024;
  int output_len = 128;
  int num_prompts = 1000;
  std::string output_json;
};

void run_bench_throughput(ThroughputArgs& args) {
  if (args.input_len <= 0 || args.output_len <= 0 || args.num_prompts <= 0) {
    fail("--input-len, --output-len and --num-prompts must be positive");
  }
  auto setup = create_engine(args.engine, args.scheduling);
  if (!setup.ok()) fail(setup.error().message);
  EngineClient& engine = setup->client();  // one engine, or the DP coordinator over its replicas
  const int vocab = engine.info().model_config->vocab_size;

  std::mutex mutex;
  std::condition_variable all_done;
  int finished = 0, failed = 0;
  int64_t output_tokens = 0;
  std::mt19937_64 rng(args.engine.seed);
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  setup->start();
  const auto start = std::chrono::steady_clock::now();
  for (int index = 0; index < args.num_prompts; ++index) {
    GenerationRequest request;
    request.request_id = "bench-" + std::to_string(index);
    request.prompt_ids.resize(args.input_len);
    for (int32_t& id : request.prompt_ids) id = token(rng);
    request.sampling.temperature = 0.0f;
    request.stop.max_tokens = args.output_len;
    request.stop.ignore_eos = true;
    const Status submitted = engine.submit(std::move(request), [&](RequestOutput output) {
      if (!output.finished) return;
      std::lock_guard lock(mutex);
      ++finished;
      output_tokens += output.num_output_tokens;
      if (output.finish_reason != FinishReason::kLength) ++failed;
      if (finished == args.num_prompts) all_done.notify_all();
    });
    if (!submitted.ok()) fail(submitted.error().message);
  }
  {
    std::unique_lock lock(mutex);
    all_done.wait(lock, [&] { return finished == args.num_prompts; });
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  setup->stop();
  if (failed > 0) fail(fmt::format("{} of {} requests did not finish with their full length", failed, args.num_prompts));

  const int64_t prompt_tokens = int64_t{args.input_len} * args.num_prompts;
  const nlohmann::json result = {{"model", args.engine.model_dir},
                                 {"num_prompts", args.num_prompts},
                                 {"input_len", args.input_len},
                                 {"output_len", args.output_len},
                                 {"max_num_seqs", args.scheduling.max_num_seqs},
                                 {"max_num_batched_tokens", args.scheduling.max_num_batched_tokens},
                                 {"elapsed_time", seconds},
                                 {"requests_per_second", args.num_prompts / seconds},
                                 {"tokens_per_second", (prompt_tokens + output_tokens) / seconds},
                                 {"output_tokens_per_second", output_tokens / seconds},
                                 {"total_num_tokens", prompt_tokens + output_tokens}};
  std::printf("Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s\n",
              result["requests_per_second"].get<double>(), result["tokens_per_second"].get<double>(),
              result["output_tokens_per_second"].get<double>());
  write_result_json(args.output_json, result);
}

}  // namespace

void add_bench_throughput_command(CLI::App& bench) {
  auto args = std::make_shared<ThroughputArgs>();
  CLI::App* command = bench.add_subcommand("throughput", "Offline engine throughput like `vllm bench throughput`");
  args->engine.add_to(*command, /*with_parallel=*/true);
  args->scheduling.add_to(*command);
  command->add_option("--input-len", args->input_len, "Prompt tokens per request");
  command->add_option("--output-len", args->output_len, "Generated tokens per request");
  command->add_option("--num-prompts", args->num_prompts, "Requests");
  command->add_option("--output-json", args->output_json, "Also write the result to this file");
  command->callback([args] { run_bench_throughput(*args); });
}

}  // namespace moeserve::cli
