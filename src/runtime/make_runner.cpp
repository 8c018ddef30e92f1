#include "runtime/make_runner.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "plan/memory_model.h"
#include "plan/startup_check.h"
#include "runtime/cpu_runner.h"
#include "runtime/cuda_backend.h"

namespace moeserve {

namespace {

constexpr const char* kBuiltWithoutCuda = "--device cuda: this moeserve was built without CUDA (no nvcc found)";

void log_backend(const BackendChoice& choice) {
  spdlog::info("backend: {} ({})", backend_name(choice.backend), choice.reason);
}

int cpu_threads(int threads) { return threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()); }

// One GPU, one replica. The plan (cuda_plan_shape) decides before anything is loaded, from the
// memory model. The runner then sizes its KV cache from --gpu-memory-utilization after loading
// the weights and its step workspace.
Result<EngineRunners> make_cuda_engine_runner(const RunnerSpec& spec, const EngineSizing& sizing,
                                              const plan::MemoryModel& memory, EngineRunners runners) {
  MS_ASSIGN_OR_RETURN(const std::vector<cuda_backend::Gpu> gpus, cuda_backend::list_gpus());
  if (gpus.empty()) return make_error("--device cuda: no CUDA device is visible");
  const cuda_backend::RunnerOptions options{.gpu_memory_utilization = static_cast<float>(sizing.gpu_memory_utilization),
                                            .block_size = sizing.block_size,
                                            .max_num_batched_tokens = sizing.max_num_batched_tokens,
                                            .enforce_eager = sizing.enforce_eager,
                                            .capture_batch_sizes = sizing.max_num_seqs,
                                            .max_logit_rows = sizing.max_num_seqs};
  if (!spec.parallel.is_single()) {
    // TP × DP ranks on the visible GPUs; the one-GPU plan below does not model them, so the ranks'
    // own allocations say what does not fit.
    MS_ASSIGN_OR_RETURN(ParallelRunners parallel,
                        make_parallel_runners(spec.model_dir, spec.config, spec.load,
                                              ParallelRunnerOptions{.parallel = spec.parallel,
                                                                    .block_size = sizing.block_size,
                                                                    .model = spec.load.model,
                                                                    .cuda = options}));
    runners.plan = fmt::format("{} GPU(s), {} ranks: not planned (the planner sizes one rank per GPU)", gpus.size(),
                               spec.parallel.world_size());
    runners.layout = fmt::format("{} on cuda: {}", parallel.group->describe_layout(), parallel.summary);
    spdlog::info("parallel layout: {}", runners.layout);
    runners.replicas = std::move(parallel.replicas);
    runners.rank_group = std::move(parallel.group);
    return runners;
  }
  const plan::DeploymentShape shape = cuda_plan_shape(spec.config, spec.load, sizing, gpus.front().total_memory_bytes);
  MS_ASSIGN_OR_RETURN(const plan::MemoryBreakdown planned, plan::check_gpu_startup(memory, shape));
  spdlog::info("plan for {} ({:.1f} GiB): {}", gpus.front().name, gpus.front().total_memory_bytes / double(1 << 30),
               planned.verdict);
  runners.plan = fmt::format("{} ({:.1f} GiB): {}", gpus.front().name,
                             gpus.front().total_memory_bytes / double(1 << 30), planned.verdict);
  MS_ASSIGN_OR_RETURN(cuda_backend::BuiltRunner built,
                      cuda_backend::make_runner(spec.model_dir, spec.config, spec.load, options));
  spdlog::info("model {} on cuda: {}", spec.model_dir, built.summary);
  runners.layout = "TP 1 x PP 1 x DP 1 (one GPU): " + built.summary;
  runners.replicas.push_back(std::move(built.runner));
  return runners;
}

// Whether the CPU holds the checkpoint's weights as float32 (WeightPrecision::keeps_f32): a
// float32 checkpoint read from disk (dummy weights are bf16) under --dtype auto or float32.
bool cpu_holds_f32(const ModelConfig& config, const LoadOptions& load) {
  return config.dtype == DType::kF32 && load.load_format != LoadFormat::kDummy &&
         load.model.precision.keeps_f32(config.dtype);
}

// What --kv-cache-dtype fp8 does on the CPU, said where a CPU model is built.
void log_cpu_kv_fp8(const LoadOptions& load) {
  if (!load.kv_cache_fp8) return;
  spdlog::info(
      "--kv-cache-dtype fp8: every KV value is rounded to e4m3 as it is written (divided by the checkpoint's "
      "k_scale / v_scale where it has them, else at scale 1.0); the CPU cache stores the e4m3 bytes, 1 byte per "
      "element against float32's 4, so a KV budget holds four times the tokens of auto");
}

}  // namespace

bool holds_fp8_weights(const ModelConfig& config, const LoadOptions& load) {
  return config.fp8_block_size.has_value() || load.model.precision.quantize_fp8;
}

plan::DeploymentShape cuda_plan_shape(const ModelConfig& config, const LoadOptions& load, const EngineSizing& sizing,
                                      int64_t device_memory_bytes) {
  return plan::DeploymentShape{
      .dtype = holds_fp8_weights(config, load) ? plan::WeightDType::kFp8 : plan::WeightDType::kBF16,
      .kv_cache_dtype = load.kv_cache_fp8 ? plan::KvCacheDType::kFp8 : plan::KvCacheDType::kF32,
      .max_model_len = sizing.max_model_len,
      .max_num_seqs = sizing.max_num_seqs,
      .max_num_batched_tokens = sizing.max_num_batched_tokens,
      .block_size = sizing.block_size,
      .gpu_memory_utilization = sizing.gpu_memory_utilization,
      .enforce_eager = sizing.enforce_eager,
      .device_memory_bytes = device_memory_bytes};
}

plan::KvCacheDType cpu_kv_cache_dtype(const LoadOptions& load) {
  return load.kv_cache_fp8 ? plan::KvCacheDType::kFp8 : plan::KvCacheDType::kF32;
}

Result<CpuNodeMemory> check_cpu_node_fits_host(const ModelConfig& config, const LoadOptions& load,
                                               const plan::MemoryModel& memory, const ParallelConfig& parallel,
                                               int64_t blocks, int block_size, const plan::HostMemory& host) {
  const int64_t replica_per_token =
      memory.cpu_replica_kv_bytes_per_token(parallel.tensor_parallel_size, cpu_kv_cache_dtype(load));
  // Only this node's replicas hold memory here (multi-node: the others are other nodes').
  const int dp = parallel.data_parallel_size;
  const int local_replicas = parallel.nodes.local_replicas(dp);
  CpuNodeMemory node;
  node.kv_bytes = blocks * block_size * replica_per_token * local_replicas;
  MS_RETURN_IF_ERROR(plan::check_cpu_kv_fits_host(node.kv_bytes, local_replicas, host));
  // Each DP replica holds a whole copy, unless expert parallelism spreads the experts over them
  // (this node's share: its replicas' part of one copy).
  const double copies = parallel.uses_expert_parallel() ? double(local_replicas) / dp : local_replicas;
  // The CPU holds bf16 copies, or fp8 ones of an fp8 checkpoint or under --quantization fp8 (the
  // planner counts one scale per 128 × 128 block; the CPU repeats it over the block's rows, 3% of
  // the fp8 bytes more), or float32 ones of a float32 checkpoint unless --dtype rounds them.
  const bool fp8 = holds_fp8_weights(config, load);
  const bool f32 = !fp8 && cpu_holds_f32(config, load);
  const plan::WeightDType held = fp8   ? plan::WeightDType::kFp8
                                 : f32 ? plan::WeightDType::kF32
                                       : plan::WeightDType::kBF16;
  node.held_name = fp8 ? "fp8" : f32 ? "float32" : "bf16";
  node.weight_bytes = static_cast<int64_t>(static_cast<double>(memory.weight_bytes(held)) * copies);
  MS_RETURN_IF_ERROR(plan::check_cpu_weights_fit_host(node.weight_bytes, node.kv_bytes, host, node.held_name));
  return node;
}

namespace {

// The CPU backend: KV blocks bought by --kv-cache-memory (per DP replica), checked against one
// max_model_len sequence and against the host's memory before any weight is loaded; then one
// runner on one thread pool, or TP × DP ranks on threads of this process (a RankGroup).
Result<EngineRunners> make_cpu_engine_runners(const RunnerSpec& spec, const EngineSizing& sizing,
                                              const plan::MemoryModel& memory, EngineRunners runners) {
  const ParallelConfig& parallel = spec.parallel;
  const int tp = parallel.tensor_parallel_size;
  const plan::KvCacheDType kv_dtype = cpu_kv_cache_dtype(spec.load);
  MS_ASSIGN_OR_RETURN(const int64_t blocks,
                      plan::check_cpu_startup(memory, sizing.cpu_kv_cache_bytes, sizing.block_size,
                                              sizing.max_model_len, tp, kv_dtype));
  MS_ASSIGN_OR_RETURN(const CpuNodeMemory node,
                      check_cpu_node_fits_host(spec.config, spec.load, memory, parallel, blocks, sizing.block_size,
                                               plan::read_host_memory()));
  const int dp = parallel.data_parallel_size;
  runners.plan = fmt::format(
      "fits: {:.3f} GiB of weights ({} copies of the {} checkpoint); --kv-cache-memory buys {} KV blocks x {} "
      "tokens per DP replica ({} B per token, {}), {:.3f} GiB in all{}, enough for one {}-token sequence",
      node.weight_bytes / double(1 << 30), node.held_name,
      spec.config.fp8_block_size ? "F8_E4M3" : dtype_name(spec.config.dtype), blocks, sizing.block_size,
      memory.cpu_replica_kv_bytes_per_token(parallel.tensor_parallel_size, kv_dtype),
      kv_dtype == plan::KvCacheDType::kFp8 ? "fp8 e4m3" : "float32", node.kv_bytes / double(1 << 30),
      parallel.nodes.local_replicas(dp) < dp ? " on this node" : "", sizing.max_model_len);
  log_cpu_kv_fp8(spec.load);
  if (!parallel.is_single()) {
    // Each rank loads its own shard (a worker process reads the checkpoint itself).
    MS_ASSIGN_OR_RETURN(ParallelRunners parallel_runners,
                        make_parallel_runners(spec.model_dir, spec.config, spec.load,
                                              ParallelRunnerOptions{.parallel = parallel,
                                                                    .num_kv_blocks = static_cast<int>(blocks),
                                                                    .block_size = sizing.block_size,
                                                                    .model = spec.load.model}));
    runners.layout = fmt::format("{} on cpu, ranks as {} ({} threads per rank){}",
                                 parallel_runners.group->describe_layout(), parallel_runners.group->executor_kind(),
                                 parallel.threads_per_rank,
                                 parallel.nodes.spans_nodes(dp) ? "; " + parallel.nodes.describe(dp) : "");
    spdlog::info("parallel layout: {}", runners.layout);
    runners.replicas = std::move(parallel_runners.replicas);
    runners.rank_group = std::move(parallel_runners.group);
    return runners;
  }
  MS_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(spec.model_dir, spec.config, spec.load));
  const double weight_gib = loaded.model->weight_bytes() / double(1 << 30);
  MS_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner,
                      make_cpu_runner(std::move(loaded), CpuRunnerOptions{.num_kv_blocks = static_cast<int>(blocks),
                                                                          .block_size = sizing.block_size,
                                                                          .threads = spec.threads}));
  const ModelConfig& model = spec.config;
  spdlog::info("model {} ({}): {:.4f}B parameters, {:.4f}B active per token, {} layers; weights ({}) packed as "
               "{} in host memory ({:.2f} GiB), computed in float32 on cpu",
               spec.model_dir, model.architecture_name, memory.params().total / 1e9, memory.params().active / 1e9,
               model.num_layers, model.fp8_block_size ? "F8_E4M3" : dtype_name(model.dtype),
               node.held_name == std::string_view("fp8") ? "fp8 (e4m3 + block scales)" : node.held_name, weight_gib);
  runners.layout = fmt::format("TP 1 x PP 1 x DP 1 (one CPU replica, {} threads)", cpu_threads(spec.threads));
  spdlog::info("parallel layout: {}", runners.layout);
  runners.replicas.push_back(std::move(runner));
  return runners;
}

}  // namespace

Result<Device> parse_device(const std::string& name) {
  if (name == "auto") return Device::kAuto;
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  return make_error("--device {} is not a device (auto, cpu or cuda)", name);
}

const char* backend_name(Backend backend) { return backend == Backend::kCuda ? "cuda" : "cpu"; }

bool cuda_compiled() { return cuda_backend::compiled(); }

std::string backend_names() { return cuda_compiled() ? "cpu, " + cuda_backend::name() : "cpu"; }

Result<BackendChoice> choose_backend(Device device, ActivationDType dtype) {
  BackendChoice choice;
  switch (device) {
    case Device::kCpu:
      return BackendChoice{Backend::kCpu, "--device cpu"};
    case Device::kCuda:
      choice = BackendChoice{Backend::kCuda, "--device cuda"};
      break;
    case Device::kAuto:
      if (!cuda_compiled()) return BackendChoice{Backend::kCpu, "--device auto: this build has no CUDA backend"};
      if (const auto gpus = cuda_backend::list_gpus(); gpus.ok() && !gpus->empty()) {
        choice = BackendChoice{Backend::kCuda, "--device auto: GPU 0 is visible (" + gpus->front().name + ")"};
      } else {
        return BackendChoice{Backend::kCpu, "--device auto: no CUDA device is visible"};
      }
      break;
  }
  // The refusals of a CUDA choice, in this order: the dtype, the build.
  if (dtype == ActivationDType::kFloat16) {
    return make_error("--dtype float16: the CUDA runner computes with bf16 weights and float32-like (auto, float32) "
                      "or bf16 (bfloat16) activations; float16 is not implemented");
  }
  if (!cuda_compiled()) return make_error(kBuiltWithoutCuda);
  return choice;
}

Result<EngineRunners> make_engine_runners(const RunnerSpec& spec, const EngineSizing& sizing) {
  EngineRunners runners;
  MS_ASSIGN_OR_RETURN(runners.backend, choose_backend(spec.device, spec.load.dtype));
  log_backend(runners.backend);
  const plan::MemoryModel memory(spec.config);
  if (runners.backend.backend == Backend::kCuda) {
    return make_cuda_engine_runner(spec, sizing, memory, std::move(runners));
  }
  return make_cpu_engine_runners(spec, sizing, memory, std::move(runners));
}

Result<std::unique_ptr<SequenceBackend>> make_sequence_backend(const RunnerSpec& spec, int max_tokens) {
  MS_ASSIGN_OR_RETURN(const BackendChoice choice, choose_backend(spec.device, spec.load.dtype));
  auto backend = std::unique_ptr<SequenceBackend>(new SequenceBackend());
  backend->config_ = spec.config;
  const int blocks = SequenceRunner::blocks_for(max_tokens);
  const bool cuda = choice.backend == Backend::kCuda;
  if (cuda && spec.parallel.is_single()) {
    MS_ASSIGN_OR_RETURN(
        cuda_backend::BuiltRunner built,
        cuda_backend::make_runner(spec.model_dir, spec.config, spec.load,
                                  cuda_backend::RunnerOptions{.num_kv_blocks = blocks,
                                                              .block_size = SequenceRunner::kBlockSize}));
    backend->device_runner_ = std::move(built.runner);
    backend->runner_ = std::make_unique<SequenceRunner>(*backend->device_runner_, max_tokens);
    return backend;
  }
  if (!cuda) log_cpu_kv_fp8(spec.load);
  if (spec.parallel.is_single()) {
    MS_ASSIGN_OR_RETURN(backend->loaded_, load_model(spec.model_dir, spec.config, spec.load));
    backend->pool_ = std::make_unique<ThreadPool>(spec.threads);
    backend->exec_ = ExecContext{backend->pool_.get()};
    backend->runner_ = std::make_unique<SequenceRunner>(*backend->loaded_.model, backend->exec_, max_tokens);
    return backend;
  }
  log_backend(choice);
  // Each rank loads its own shard; no unsharded model is built first.
  MS_ASSIGN_OR_RETURN(
      backend->parallel_,
      make_parallel_runners(spec.model_dir, spec.config, spec.load,
                            ParallelRunnerOptions{.parallel = spec.parallel,
                                                  .num_kv_blocks = blocks,
                                                  .block_size = SequenceRunner::kBlockSize,
                                                  .model = spec.load.model,
                                                  .cuda = cuda ? std::optional(cuda_backend::RunnerOptions{})
                                                               : std::nullopt}));
  const RankGroup& group = *backend->parallel_.group;
  spdlog::info("parallel layout: {}",
               cuda ? fmt::format("{} on cuda: {}", group.describe_layout(), backend->parallel_.summary)
                    : fmt::format("{} (ranks as {})", group.describe_layout(), group.executor_kind()));
  backend->runner_ = std::make_unique<SequenceRunner>(*backend->parallel_.replicas[0], max_tokens);
  return backend;
}

}  // namespace moeserve
