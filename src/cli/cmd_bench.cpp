// `moeserve bench latency MODEL_DIR [--input-len N] [--output-len N] [--num-iters N]
// [--output-json FILE]`: like vLLM's `bench latency` for one sequence — times a prefill of
// input-len tokens and output-len greedy decode steps, and reports them next to this machine's
// ceilings (measured memcpy bandwidth ÷ weight bytes read per decode token). Works with
// --load-format dummy --hf-overrides to bench a real model's shape without its checkpoint.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/bench_latency_cuda.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "model/weight_plan.h"
#include "runtime/make_runner.h"
#include "runtime/sampler.h"
#include "runtime/sequence_runner.h"

namespace moeserve::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  EngineFlags engine;
  int input_len = 128;
  int output_len = 64;
  int num_iters = 3;
  std::string output_json;
  std::string batch_sizes = "1";  // --device cuda: comma-separated decode batch sizes
  int prefill_batch = 8;           // --device cuda: prefill of prefill_batch × prefill_len tokens
  int prefill_len = 1024;
  float gpu_memory_utilization = 0.9f;
  int max_num_batched_tokens = 8192;  // --device cuda: rows per forward pass (larger steps are split)
  std::string prefill_precision;  // empty: as --dtype says
  bool enforce_eager = false;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Copy bandwidth (bytes read + written per second) of a 256 MiB memcpy, best of 3.
double measure_copy_bandwidth() {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0.0;
  for (int trial = 0; trial < 3; ++trial) {
    const auto start = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    best = std::max(best, 2.0 * bytes / seconds_since(start));
  }
  return best;
}

// Weight bytes one decode token reads (bf16): the weight plan's tensors but the embedding table
// and the experts a token does not route to (top_k of num_experts per MoE layer).
double decode_weight_bytes(const ModelConfig& config) {
  return 2.0 * decode_read_elements(config, WeightPlan::build(config));
}

void run_bench_latency(BenchArgs args) {
  if (args.input_len <= 0 || args.output_len <= 0 || args.num_iters <= 0) {
    fail("--input-len, --output-len and --num-iters must be positive");
  }
  // --prefill-precision (--device cuda) is --dtype spelt by the activation split: split-bf16
  // float32, bf16 bfloat16. The CPU computes float32 whatever --dtype says.
  if (!args.prefill_precision.empty()) args.engine.dtype = args.prefill_precision == "bf16" ? "bfloat16" : "float32";
  auto spec = args.engine.runner_spec();  // config.json, read once: the runner and the ceilings use it
  if (!spec.ok()) fail(spec.error().message);
  auto backend = choose_backend(spec->device, spec->load.dtype);
  if (!backend.ok()) fail(backend.error().message);
  if (backend->backend == Backend::kCuda) {
    auto batches = parse_id_list(args.batch_sizes);
    if (!batches.ok() || batches->empty()) fail("--batch-size must be a comma-separated list of sizes");
    for (int batch : *batches) {
      if (batch <= 0) fail("--batch-size entries must be positive");
    }
    if (args.prefill_len < 0) fail("--prefill-len must be 0 (no prefill measurement) or positive");
    if (args.prefill_len > 0 && args.prefill_batch <= 0) fail("--prefill-batch must be positive");
    run_bench_latency_cuda(CudaLatencyArgs{.spec = &*spec,
                                           .input_len = args.input_len,
                                           .output_len = args.output_len,
                                           .num_iters = args.num_iters,
                                           .batch_sizes = std::vector<int>(batches->begin(), batches->end()),
                                           .prefill_batch = args.prefill_batch,
                                           .prefill_len = args.prefill_len,
                                           .gpu_memory_utilization = args.gpu_memory_utilization,
                                           .max_num_batched_tokens = args.max_num_batched_tokens,
                                           .enforce_eager = args.enforce_eager,
                                           .output_json = args.output_json});
    return;
  }
  auto loaded = load_model(spec->model_dir, spec->config, spec->load);
  if (!loaded.ok()) fail(loaded.error().message);
  const CpuModel& model = *loaded->model;
  const int vocab = model.config().vocab_size;
  ThreadPool pool(args.engine.threads);
  ExecContext exec{&pool};
  std::vector<int32_t> prompt(args.input_len);
  for (int i = 0; i < args.input_len; ++i) prompt[i] = (i * 7919 + 13) % vocab;

  double best_prefill = 1e30, best_decode = 1e30;
  for (int iter = 0; iter <= args.num_iters; ++iter) {  // iteration 0 warms up
    SequenceRunner runner(model, exec, args.input_len + args.output_len);
    auto start = Clock::now();
    auto logits = runner.append(prompt, false);
    if (!logits.ok()) fail(logits.error().message);
    const double prefill = seconds_since(start);
    start = Clock::now();
    for (int step = 0; step < args.output_len; ++step) {
      int32_t token = argmax_token(std::span<const float>(logits->f32(), vocab));
      logits = runner.append(std::span<const int32_t>(&token, 1), false);
      if (!logits.ok()) fail(logits.error().message);
    }
    const double decode = seconds_since(start);
    if (iter > 0) {
      best_prefill = std::min(best_prefill, prefill);
      best_decode = std::min(best_decode, decode);
    }
  }
  const double bandwidth = measure_copy_bandwidth();
  const double bytes_per_token = decode_weight_bytes(model.config());
  const double decode_tps = args.output_len / best_decode;
  const double roofline_tps = bandwidth / bytes_per_token;
  const nlohmann::json result = {
      {"benchmark", "latency"},
      {"model", args.engine.model_dir},
      {"device", "cpu"},
      {"threads", pool.num_threads()},
      {"hardware_threads", std::thread::hardware_concurrency()},
      {"input_len", args.input_len},
      {"output_len", args.output_len},
      {"batch_size", 1},
      {"num_iters", args.num_iters},
      {"prefill_seconds", best_prefill},
      {"prefill_tokens_per_s", args.input_len / best_prefill},
      {"decode_seconds", best_decode},
      {"decode_tokens_per_s", decode_tps},
      {"copy_bandwidth_bytes_per_s", bandwidth},
      {"weight_bytes_per_decode_token", bytes_per_token},
      {"decode_roofline_tokens_per_s", roofline_tps},
      {"decode_fraction_of_roofline", decode_tps / roofline_tps},
  };
  std::printf("%s\n", result.dump(2).c_str());
  write_result_json(args.output_json, result);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (speed is measured here, never in tests)");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchArgs>();
  CLI::App* latency = bench->add_subcommand("latency", "Prefill and decode speed of one sequence");
  args->engine.add_to(*latency);
  latency->add_option("--input-len", args->input_len, "Prompt tokens");
  latency->add_option("--output-len", args->output_len, "Generated tokens");
  latency->add_option("--num-iters", args->num_iters, "Timed iterations (best is reported)");
  latency->add_option("--output-json", args->output_json, "Also write the result to this file");
  latency->add_option("--batch-size", args->batch_sizes, "--device cuda: decode batch sizes, e.g. 1,8,32,64");
  latency->add_option("--prefill-batch", args->prefill_batch, "--device cuda: sequences in the prefill measurement");
  latency->add_option("--prefill-len", args->prefill_len, "--device cuda: tokens per prefill sequence (0: skip)");
  latency->add_option("--gpu-memory-utilization", args->gpu_memory_utilization,
                      "--device cuda: fraction of GPU memory for weights, workspace and KV cache");
  latency->add_option("--max-num-batched-tokens", args->max_num_batched_tokens,
                      "--device cuda: tokens per forward pass; larger prefills are split into passes of this size")
      ->check(CLI::Range(1, 1 << 20));
  latency->add_option("--prefill-precision", args->prefill_precision,
                      "--device cuda: GEMM activations: split-bf16 (hi + lo, float32-like; as --dtype float32) or bf16 (as --dtype "
                      "bfloat16); default: as --dtype")
      ->check(CLI::IsMember({"split-bf16", "bf16"}));
  latency->add_flag("--enforce-eager", args->enforce_eager, "--device cuda: decode steps without CUDA graphs");
  latency->callback([args] { run_bench_latency(*args); });
  add_bench_serve_command(*bench);
  add_bench_throughput_command(*bench);
  add_bench_tokenize_command(*bench);
}

}  // namespace moeserve::cli
