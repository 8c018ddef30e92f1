#include "cli/engine_flags.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "loader/hub_cache.h"
#include "cli/flag_checks.h"
#include "cli/log_level.h"

namespace moeserve::cli {

// More CPU workers than any host has cores only oversubscribes it.
constexpr int kMaxThreads = 1024;

void EngineFlags::add_to(CLI::App& command, bool with_parallel) {
  command.add_option("model", model_dir,
                     "Model directory (Hugging Face layout: config.json + safetensors) or hub id (ORG/NAME, from the "
                     "Hugging Face cache, downloaded into it when missing unless HF_HUB_OFFLINE=1)")
      ->required();
  command
      .add_option("--dtype", dtype,
                  "Activation precision on CUDA: auto = the checkpoint's dtype (bf16 checkpoints: GEMM inputs rounded "
                  "to bf16, vLLM's numerics), bfloat16 likewise, float32 float32-like (split bf16 GEMMs, ~1e-5 of "
                  "transformers' float32, half the prefill speed); the CPU computes float32, and holds a float32 "
                  "checkpoint's weights as float32 unless --dtype bfloat16/float16 rounds them to bf16 (CUDA "
                  "holds bf16, or fp8 where the checkpoint or --quantization makes them fp8)")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "float32", "half", "float"}));
  command.add_option("--load-format", load_format, "auto: read the checkpoint; dummy: random weights of its shape")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
  command
      .add_option("--quantization,-q", quantization,
                  "fp8: quantize a 16-bit checkpoint's Linear weights to fp8 (e4m3, 128x128 blocks) as they load "
                  "(both backends hold and compute with fp8 weights). An fp8 "
                  "checkpoint needs no flag")
      ->check(CLI::IsMember({"fp8"}));
  command
      .add_option("--kv-cache-dtype", kv_cache_dtype,
                  "auto: float32 KV entries; fp8 (= fp8_e4m3): every KV value rounded to e4m3 as it is written (at the "
                  "checkpoint's k_scale / v_scale, else 1.0, as vLLM) and stored as e4m3 bytes, on both backends: 1 "
                  "byte per element, 4x the tokens of auto in the same KV memory")
      ->check(CLI::IsMember({"auto", "fp8", "fp8_e4m3"}));
  command.add_option("--hf-overrides", hf_overrides, "JSON merged into config.json, e.g. '{\"num_hidden_layers\": 8}'");
  command.add_option("--seed", seed, "Random seed (sampling, dummy weights)")->check(uint64_decimal());
  command.add_option("--device", device,
                     "Device to run on: cuda (GPU 0, or rank r on GPU r mod the visible GPUs; needs a CUDA build), "
                     "cpu, or auto (cuda when a GPU is visible, else cpu)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  // Bounded: -1 would ask the thread pool for SIZE_MAX workers.
  command.add_option("--threads", threads, "CPU worker threads (0 = all cores)")
      ->check(int_in_range(0, kMaxThreads, fmt::format("between 0 (all cores) and {}", kMaxThreads),
                           fmt::format("0-{}", kMaxThreads)));
  command.add_option("--log-level", log_level,
                     "Log level: debug, info, warning, error or critical (default: $VLLM_LOGGING_LEVEL, else info)")
      ->check(log_level_name());
  // Runs when this command's arguments are parsed (only for the command given), before its
  // callback loads anything.
  command.add_option("--revision", revision, "Branch, tag or commit of a hub id (default main)");
  command.add_option("--download-dir", download_dir,
                     "Hugging Face cache directory for hub ids (default: $HF_HUB_CACHE, $HF_HOME/hub, "
                     "~/.cache/huggingface/hub)");
  command.parse_complete_callback([this] {
    Result<spdlog::level::level_enum> level = resolve_log_level(log_level, std::getenv(kLogLevelEnv));
    if (!level.ok()) fail(level.error().message);
    spdlog::set_level(*level);
    model_id = model_dir;
    Result<std::string> resolved =
        resolve_model_path(model_dir, HubLookup{.revision = revision, .download_dir = download_dir});
    if (!resolved.ok()) fail(resolved.error().message);
    model_dir = *resolved;
  });
  if (!with_parallel) return;
  command.add_option("--tensor-parallel-size", tensor_parallel_size, "Tensor-parallel ranks per replica")
      ->check(positive_int());
  command.add_option("--data-parallel-size", data_parallel_size, "Data-parallel replicas")->check(positive_int());
  command.add_flag("--enable-expert-parallel", enable_expert_parallel,
                   "Expert parallelism (EP = TP x DP) instead of tensor parallelism for MoE layers");
  command.add_option("--all2all-backend", all2all_backend,
                     "EP dispatch/combine: allgather_reducescatter or nccl_alltoall (point to point)");
  command.add_option("--expert-placement-strategy", expert_placement_strategy, "linear or round_robin");
  command.add_flag("--enable-eplb", enable_eplb, "Expert-parallel load balancing (needs --enable-expert-parallel)");
  command.add_option("--distributed-executor-backend", distributed_executor_backend,
                     "How the ranks run: mp (one worker process per rank: NCCL between CUDA ranks, gloo between CPU "
                     "ranks; the default on GPUs and over several nodes), threads (one process; the default for CPU "
                     "ranks of one node), uni (one rank)");
  command.add_option("--eplb-config", eplb_config,
                     "JSON, e.g. '{\"window_size\":1000,\"step_interval\":3000,\"num_redundant_experts\":2,"
                     "\"log_balancedness\":true}'");
}

Result<ParallelConfig> EngineFlags::parallel_config() const {
  ParallelConfig parallel;
  parallel.tensor_parallel_size = tensor_parallel_size;
  parallel.data_parallel_size = data_parallel_size;
  parallel.enable_expert_parallel = enable_expert_parallel;
  MS_ASSIGN_OR_RETURN(parallel.all2all, parse_all2all_backend(all2all_backend));
  MS_ASSIGN_OR_RETURN(parallel.placement, parse_expert_placement(expert_placement_strategy));
  MS_ASSIGN_OR_RETURN(parallel.eplb, parse_eplb_config(eplb_config, enable_eplb));
  parallel.num_redundant_experts = parallel.eplb.num_redundant_experts;
  parallel.nodes = nodes;
  // As vLLM, worker processes when ranks run on other nodes or on GPUs (their collectives over
  // NCCL); moeserve's threads for CPU ranks of one node. (A device that cannot be chosen is
  // refused later, by the same choice.)
  const bool multi_rank = tensor_parallel_size * data_parallel_size > 1;
  const auto on_gpu = [&] {
    const Result<Device> kind = parse_device(device);
    if (!kind.ok()) return false;
    const Result<BackendChoice> choice = choose_backend(*kind, ActivationDType::kAuto);
    return choice.ok() && choice->backend == Backend::kCuda;
  };
  const bool processes = nodes.spans_nodes(data_parallel_size) || (multi_rank && on_gpu());
  const std::string executor = !distributed_executor_backend.empty() ? distributed_executor_backend
                               : processes                           ? "mp"
                                                                     : "threads";
  MS_ASSIGN_OR_RETURN(parallel.executor, parse_distributed_executor(executor));
  const int cores = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  parallel.threads_per_rank = std::max(1, cores / std::max(1, parallel.local_world_size()));
  MS_RETURN_IF_ERROR(parallel.validate());
  return parallel;
}

Result<RunnerSpec> EngineFlags::runner_spec() const {
  RunnerSpec spec;
  spec.model_dir = model_dir;
  MS_ASSIGN_OR_RETURN(spec.load, load_options());
  MS_ASSIGN_OR_RETURN(spec.config, load_model_config(model_dir, spec.load.hf_overrides));
  MS_ASSIGN_OR_RETURN(spec.device, parse_device(device));
  MS_ASSIGN_OR_RETURN(spec.parallel, parallel_config());
  // Random weights of an fp8 checkpoint's shape are fp8 with scales, as its weights would load.
  if (spec.load.load_format == LoadFormat::kDummy && spec.config.fp8_block_size) {
    spec.load.model.precision.quantize_fp8 = true;
  }
  spec.threads = threads;
  return spec;
}

Result<LoadOptions> EngineFlags::load_options() const {
  LoadOptions options;
  options.hf_overrides = nlohmann::json::parse(hf_overrides, nullptr, /*allow_exceptions=*/false);
  if (options.hf_overrides.is_discarded() || !options.hf_overrides.is_object()) {
    return make_error("--hf-overrides must be a JSON object, got '{}'", hf_overrides);
  }
  options.load_format = load_format == "dummy" ? LoadFormat::kDummy : LoadFormat::kAuto;
  if (dtype == "float32" || dtype == "float") options.dtype = ActivationDType::kFloat32;
  if (dtype == "bfloat16") options.dtype = ActivationDType::kBFloat16;
  if (dtype == "float16" || dtype == "half") options.dtype = ActivationDType::kFloat16;  // refused on CUDA
  options.model.precision.f32 = float32_weights(options.dtype);
  options.seed = seed;
  options.quantize_fp8 = quantization == "fp8";
  options.model.precision.quantize_fp8 = options.quantize_fp8;
  options.kv_cache_fp8 = kv_cache_dtype != "auto";
  options.model.kv_cache_fp8 = options.kv_cache_fp8;
  return options;
}

std::vector<std::string> expand_vllm_short_flags(int argc, char** argv) {
  static constexpr std::pair<std::string_view, std::string_view> kShort[] = {
      {"-tp", "--tensor-parallel-size"},      {"-dp", "--data-parallel-size"},
      {"-dpl", "--data-parallel-size-local"}, {"-dpr", "--data-parallel-start-rank"},
      {"-dpa", "--data-parallel-address"},    {"-dpp", "--data-parallel-rpc-port"}};
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    for (const auto& [short_name, long_name] : kShort) {
      if (arg == short_name || arg.rfind(std::string(short_name) + "=", 0) == 0) {
        arg = std::string(long_name) + arg.substr(short_name.size());
      }
    }
    args.push_back(std::move(arg));
  }
  return args;
}

Result<std::vector<int32_t>> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    int32_t value = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size()) {
      return make_error("'{}' is not a comma-separated list of token ids", text);
    }
    ids.push_back(value);
    begin = end + 1;
  }
  return ids;
}

}  // namespace moeserve::cli
