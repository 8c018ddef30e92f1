#include "cli/engine_setup.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "plan/memory_model.h"
#include "plan/startup_check.h"
#include "runtime/cpu_runner.h"
#include "runtime/parallel_runner.h"
#ifdef MOESERVE_HAVE_CUDA
#include "device/cuda/cuda_device.h"
#include "runtime/cuda/cuda_runner.h"
#endif

namespace moeserve::cli {

namespace {

// The startup summary a user reads first: what runs, how big, in what memory, in what layout.
void log_startup(const std::string& model_dir, const plan::MemoryModel& memory, const Runner& runner,
                 const EngineConfig& config, int threads) {
  const ModelConfig& model = runner.config();
  spdlog::info("model {} ({}): {:.4f}B parameters, {:.4f}B active per token, {} layers; weights {} read in place, "
               "computed in float32 on cpu",
               model_dir, model.architecture_name, memory.params().total / 1e9, memory.params().active / 1e9,
               model.num_layers, dtype_name(model.dtype));
  spdlog::info("KV cache: {} blocks x {} tokens = {} tokens ({} B per token), max_model_len {}, max_num_seqs {}, "
               "max_num_batched_tokens {}, prefix caching {}",
               runner.num_kv_blocks(), runner.block_size(), int64_t{runner.num_kv_blocks()} * runner.block_size(),
               memory.kv_bytes_per_token(plan::KvCacheDType::kF32), config.scheduler.max_model_len,
               config.scheduler.max_num_seqs, config.scheduler.max_num_batched_tokens,
               config.enable_prefix_caching ? "on" : "off");
  spdlog::info("parallel layout: TP 1 x PP 1 x DP 1 (one CPU replica, {} threads)",
               threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
}

// TP × DP ranks on threads of this process: one engine per DP replica over one RankGroup
// (each replica's KV cache holds `blocks` blocks, so --kv-cache-memory is per replica).
Result<EngineSetup> create_parallel_engines(const EngineFlags& flags, const ParallelConfig& parallel,
                                            const EngineConfig& config, int blocks, int block_size,
                                            std::shared_ptr<const Tokenizer> tokenizer, EngineSetup setup) {
  MS_ASSIGN_OR_RETURN(LoadOptions options, flags.load_options());
  MS_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(flags.model_dir, options));
  const ModelConfig model_config = loaded.model->config();
  loaded.model.reset();  // each rank loads its own shard from the weights
  MS_ASSIGN_OR_RETURN(ParallelRunners runners,
                      make_parallel_runners(std::move(loaded.weights), model_config,
                                            ParallelRunnerOptions{.parallel = parallel,
                                                                  .num_kv_blocks = blocks,
                                                                  .block_size = block_size}));
  spdlog::info("parallel layout: {} on cpu, {} threads per rank", runners.group->describe_layout(),
               parallel.threads_per_rank);
  std::vector<std::unique_ptr<Engine>> engines;
  for (auto& runner : runners.replicas) {
    MS_ASSIGN_OR_RETURN(auto engine, Engine::create(flags.model_dir, std::move(runner), tokenizer, config));
    engines.push_back(std::move(engine));
  }
  setup.rank_group = runners.group;
  if (engines.size() == 1) {
    setup.engine = std::move(engines.front());
  } else {
    setup.data_parallel = std::make_unique<DpCoordinator>(std::move(engines));
  }
  return setup;
}

}  // namespace

Result<EngineSetup> create_engine(const EngineFlags& flags, const SchedulingFlags& scheduling) {
  MS_ASSIGN_OR_RETURN(LoadOptions options, flags.load_options());
  const std::string& model_dir = flags.model_dir;
  MS_ASSIGN_OR_RETURN(ModelConfig model_config, load_model_config(model_dir, options.hf_overrides));
  EngineSetup setup;
  MS_ASSIGN_OR_RETURN(setup.generation, load_generation_config(scheduling.generation_config, model_dir, model_config));
  MS_ASSIGN_OR_RETURN(EngineConfig config, scheduling.engine_config(model_config));
  config.eos_token_ids = setup.generation.eos_token_ids;
  config.seed = flags.seed;

  // The tokenizer before any weight: a server without one cannot answer.
  const std::string tokenizer_dir = scheduling.tokenizer.empty() ? model_dir : scheduling.tokenizer;
  auto tokenizer = Tokenizer::from_dir(tokenizer_dir);
  if (!tokenizer.ok()) {
    return make_error("serving needs the model's tokenizer (or --tokenizer DIR): {}", tokenizer.error().message);
  }
  const plan::MemoryModel memory(model_config);
  MS_ASSIGN_OR_RETURN(const ParallelConfig parallel, flags.parallel_config());
  if (flags.use_cuda()) {
#ifdef MOESERVE_HAVE_CUDA
    // Decide before loading anything, from the memory model: bf16 weights, the runner's float32
    // KV cache, CUDA graphs unless --enforce-eager. Then the runner sizes its KV cache from
    // --gpu-memory-utilization after loading the weights and its step workspace (vLLM's
    // profile-then-allocate order).
    MS_ASSIGN_OR_RETURN(const std::vector<cuda::DeviceInfo> devices, cuda::list_devices());
    if (devices.empty()) return make_error("--device cuda: no CUDA device is visible");
    plan::DeploymentShape shape{.dtype = plan::WeightDType::kBF16,
                                .kv_cache_dtype = plan::KvCacheDType::kF32,
                                .max_model_len = config.scheduler.max_model_len,
                                .max_num_seqs = config.scheduler.max_num_seqs,
                                .max_num_batched_tokens = config.scheduler.max_num_batched_tokens,
                                .block_size = scheduling.block_size,
                                .gpu_memory_utilization = scheduling.gpu_memory_utilization,
                                .enforce_eager = scheduling.enforce_eager,
                                .device_memory_bytes = static_cast<int64_t>(devices.front().total_memory_bytes)};
    MS_ASSIGN_OR_RETURN(const plan::MemoryBreakdown planned, plan::check_gpu_startup(memory, shape));
    spdlog::info("plan for {} ({:.1f} GiB): {}", devices.front().name,
                 devices.front().total_memory_bytes / double(1 << 30), planned.verdict);
    MS_ASSIGN_OR_RETURN(
        std::unique_ptr<CudaRunner> cuda_runner,
        make_cuda_runner(model_dir, options,
                         CudaRunnerOptions{.gpu_memory_utilization = static_cast<float>(scheduling.gpu_memory_utilization),
                                           .block_size = scheduling.block_size,
                                           .max_num_batched_tokens = config.scheduler.max_num_batched_tokens,
                                           .enforce_eager = scheduling.enforce_eager,
                                           .capture_batch_sizes = config.scheduler.max_num_seqs}));
    spdlog::info("model {} on cuda: {:.2f} GiB of bf16 weights, {} activations, KV cache {} blocks x {} tokens (float32)",
                 model_dir, cuda_runner->weight_bytes() / double(1 << 30),
                 cuda::prefill_precision_name(cuda_runner->prefill_precision()),
                 cuda_runner->num_kv_blocks(), cuda_runner->block_size());
    MS_ASSIGN_OR_RETURN(setup.engine, Engine::create(model_dir, std::move(cuda_runner), *tokenizer, config));
    return setup;
#else
    return make_error("--device cuda: this moeserve was built without CUDA (no nvcc found)");
#endif
  }
  // Decide before loading anything: the same arithmetic `moeserve plan` prints.
  MS_ASSIGN_OR_RETURN(const int64_t blocks, plan::check_cpu_startup(memory, scheduling.kv_cache_bytes,
                                                                    scheduling.block_size,
                                                                    config.scheduler.max_model_len));
  const int64_t kv_bytes = blocks * scheduling.block_size * memory.kv_bytes_per_token(plan::KvCacheDType::kF32) *
                           parallel.data_parallel_size;
  MS_RETURN_IF_ERROR(plan::check_cpu_kv_fits_host(kv_bytes, parallel.data_parallel_size, plan::read_host_memory()));
  if (!parallel.is_single()) {
    return create_parallel_engines(flags, parallel, config, static_cast<int>(blocks), scheduling.block_size, *tokenizer,
                                   std::move(setup));
  }
  MS_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(model_dir, options));
  MS_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner,
                      make_cpu_runner(std::move(loaded), CpuRunnerOptions{.num_kv_blocks = static_cast<int>(blocks),
                                                                          .block_size = scheduling.block_size,
                                                                          .threads = flags.threads}));
  log_startup(model_dir, memory, *runner, config, flags.threads);
  MS_ASSIGN_OR_RETURN(setup.engine, Engine::create(model_dir, std::move(runner), *tokenizer, config));
  return setup;
}

}  // namespace moeserve::cli
