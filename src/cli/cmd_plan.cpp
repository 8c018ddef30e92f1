// `moeserve plan MODEL --gpus 8xH200 [--dtype auto|bfloat16|fp8] [--kv-cache-dtype auto|fp8]
// [--max-model-len N] [--max-num-seqs N] [--max-num-batched-tokens N]
// [--gpu-memory-utilization F] [--block-size N] [--enforce-eager] [--json]`: sizes a deployment
// with the memory model the engine uses (src/plan/) and prints the layouts considered, the
// winner and why, and the `moeserve serve` command — or the smallest GPU set that would fit.
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "plan/model_catalog.h"
#include "plan/planner.h"

namespace moeserve::cli {

namespace {

struct PlanArgs {
  std::string model;
  std::string gpus;
  std::string dtype = "auto";
  std::string kv_cache_dtype = "auto";
  std::string quantization;  // serve's --quantization: fp8 weights, whatever --dtype says
  int max_model_len = 0;
  std::optional<int> max_num_seqs;
  std::optional<int> max_num_batched_tokens;
  double gpu_memory_utilization = 0.9;
  int block_size = 16;
  bool enforce_eager = false;
  bool json = false;
  bool print_config = false;
};

template <typename T>
T value_or_fail(Result<T> result) {
  if (!result.ok()) fail(result.error().message);
  return std::move(*result);
}

void run_plan(const PlanArgs& args) {
  if (args.print_config) {  // a catalog model's config.json, e.g. to run its shape with --load-format dummy
    const plan::CatalogModel* model = value_or_fail(plan::find_catalog_model(args.model));
    std::printf("%s\n", model->config.dump(2).c_str());
    return;
  }
  if (args.gpus.empty()) fail("plan: --gpus is required, e.g. --gpus 8xH200");
  plan::PlanRequest request;
  request.gpus = value_or_fail(plan::parse_gpu_set(args.gpus));
  request.dtype = value_or_fail(plan::parse_weight_dtype(args.dtype));
  if (!args.quantization.empty()) {
    if (args.quantization != "fp8") {
      fail("plan: --quantization " + args.quantization + " is not supported (supported: fp8, as serve reads it)");
    }
    request.dtype = plan::WeightDType::kFp8;
  }
  request.kv_cache_dtype = value_or_fail(plan::parse_kv_cache_dtype(args.kv_cache_dtype));
  request.max_model_len = args.max_model_len;
  request.max_num_seqs = args.max_num_seqs;
  request.max_num_batched_tokens = args.max_num_batched_tokens;
  request.gpu_memory_utilization = args.gpu_memory_utilization;
  request.block_size = args.block_size;
  request.enforce_eager = args.enforce_eager;
  const plan::ResolvedModel model = value_or_fail(plan::resolve_model(args.model));
  const plan::Plan result = value_or_fail(plan::make_plan(model, request));
  if (args.json) {
    std::printf("%s\n", plan::render_plan_json(result).dump(2).c_str());
  } else {
    std::printf("%s", plan::render_plan_text(result).c_str());
  }
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* command = app.add_subcommand(
      "plan", "Size a deployment: parameters, weights and KV cache per GPU, the best TP/PP/DP/EP layout and the "
              "serve command (MODEL: checkpoint dir, config.json, or a catalog id such as deepseek-ai/DeepSeek-V3)");
  command->add_option("model", args->model, "checkpoint directory, config.json, or catalog model id")->required();
  command->add_option("--gpus", args->gpus, "GPU set, e.g. 8xH200, 2xH100, 1xA100-40GB (required)");
  command->add_option("--dtype", args->dtype, "weight dtype: auto (the checkpoint's), bfloat16, float16, fp8");
  command->add_option("--quantization,-q", args->quantization,
                      "fp8: the weights quantized to fp8 while they load, as serve's --quantization fp8 (same as "
                      "--dtype fp8)");
  command->add_option("--kv-cache-dtype", args->kv_cache_dtype,
                      "KV cache dtype: auto (float32, as moeserve's CUDA backend stores it), fp8 (fp8_e4m3)");
  command->add_option("--max-model-len", args->max_model_len, "context length (default: max_position_embeddings)");
  command->add_option("--max-num-seqs", args->max_num_seqs, "sequences per step (default: vLLM's for the GPU)");
  command->add_option("--max-num-batched-tokens", args->max_num_batched_tokens,
                      "tokens per step (default: vLLM's for the GPU)");
  command->add_option("--gpu-memory-utilization", args->gpu_memory_utilization, "fraction of GPU memory to use");
  command->add_option("--block-size", args->block_size, "tokens per KV block");
  command->add_flag("--enforce-eager", args->enforce_eager, "no CUDA graphs");
  command->add_flag("--json", args->json, "print the plan as JSON");
  command->add_flag("--print-config", args->print_config,
                    "print a catalog model's config.json instead of a plan (for --load-format dummy runs of its shape)");
  command->callback([args] { run_plan(*args); });
}

}  // namespace moeserve::cli
