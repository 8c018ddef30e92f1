// runtime/make_runner: the one place that turns "this model, on this device, in this layout" into
// runners. The CLI parses its flags and config.json (once per start-up) and hands both here; the
// backend (CPU or CUDA), the layout (one rank, or a RankGroup of TP × DP ranks on threads), the
// start-up memory checks and the KV cache sizing are decided here, so cli/ holds no backend
// #ifdef (the CUDA side is reached through runtime/cuda_backend.h, compiled per build).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/thread_pool.h"
#include "model/config.h"
#include "plan/memory_model.h"
#include "plan/startup_check.h"
#include "runtime/loaded_model.h"
#include "runtime/parallel_config.h"
#include "runtime/parallel_runner.h"
#include "runtime/rank_group.h"
#include "runtime/runner.h"
#include "runtime/sequence_runner.h"

namespace moeserve {

// --device: auto (the default, as vLLM picks its platform), cpu or cuda.
enum class Device { kAuto, kCpu, kCuda };
Result<Device> parse_device(const std::string& name);

enum class Backend { kCpu, kCuda };
const char* backend_name(Backend backend);  // "cpu", "cuda"

// Whether this build has the CUDA backend compiled in.
bool cuda_compiled();
// The backends of this build, as --version lists them: "cpu" or "cpu, cuda sm_90a".
std::string backend_names();

struct BackendChoice {
  Backend backend = Backend::kCpu;
  std::string reason;  // why, in the startup log's words ("--device cpu", "--device auto: ...")
};

// The backend for --device, whatever the layout (every layout runs on either): cpu and cuda as
// asked; auto: cuda when this build has CUDA and a GPU is visible, else cpu. Refused: --dtype
// float16 on CUDA, --device cuda in a build without CUDA. Asks the CUDA runtime for its GPUs only
// for auto.
Result<BackendChoice> choose_backend(Device device, ActivationDType dtype);

// What to run and where.
struct RunnerSpec {
  std::string model_dir;
  ModelConfig config;  // config.json with --hf-overrides, parsed once by the caller and used as is
  LoadOptions load;    // weights: the checkpoint or dummy ones, --dtype, the seed
  Device device = Device::kAuto;
  ParallelConfig parallel;  // validated (ParallelConfig::validate); threads_per_rank set
  int threads = 0;          // CPU worker threads of a single rank (0 = all cores)
};

// How an engine (serve, bench throughput) sizes its runner: the KV cache and the largest step.
struct EngineSizing {
  int block_size = 16;
  int max_model_len = 0;  // resolved (the scheduler's), > 0
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int64_t cpu_kv_cache_bytes = int64_t{1} << 30;  // --kv-cache-memory, per DP replica (CPU)
  double gpu_memory_utilization = 0.9;            // CUDA
  bool enforce_eager = false;                     // CUDA: no CUDA graphs
};

struct EngineRunners {
  BackendChoice backend;
  // The startup log's summary, for the live page's deployment panel: the layout ("TP 1 x PP 1 x
  // DP 1 (one CPU replica, 8 threads)" or RankGroup::describe_layout()) and what the start-up
  // memory check (the arithmetic `moeserve plan` prints) said about the deployment.
  std::string layout;
  std::string plan;
  std::vector<std::unique_ptr<Runner>> replicas;  // one per DP replica (one without parallel flags)
  std::shared_ptr<RankGroup> rank_group;          // the ranks behind them, with parallel flags
};

// Whether the weights are held as fp8 (e4m3 with block scales): an fp8 checkpoint, or
// --quantization fp8 of a 16/32-bit one. Both backends hold them so.
bool holds_fp8_weights(const ModelConfig& config, const LoadOptions& load);

// The deployment the one-GPU start-up check plans (plan::check_gpu_startup): the weights as the
// CUDA runner holds them (fp8 per holds_fp8_weights, else bf16), its KV cache (e4m3 under
// --kv-cache-dtype fp8, else float32), the engine's sizing, on a GPU of `device_memory_bytes`.
plan::DeploymentShape cuda_plan_shape(const ModelConfig& config, const LoadOptions& load, const EngineSizing& sizing,
                                      int64_t device_memory_bytes);

// The element of the CPU's KV cache under `load`: e4m3 bytes (kFp8) with --kv-cache-dtype fp8,
// float32 (kF32) otherwise.
plan::KvCacheDType cpu_kv_cache_dtype(const LoadOptions& load);

// This node's share of a CPU deployment in host memory, checked before anything loads (the leader
// for its replicas, a --headless node for its own): its replicas' `blocks` KV blocks each (of
// cpu_kv_cache_dtype(load) elements) and
// their weight copies (whole per replica, or their part of one copy with expert parallelism),
// against what the host has available (`host`: plan::read_host_memory(); plan/startup_check.h).
struct CpuNodeMemory {
  int64_t kv_bytes = 0;
  int64_t weight_bytes = 0;
  const char* held_name = "bf16";  // how the CPU holds the weights: bf16, fp8 or float32
};
Result<CpuNodeMemory> check_cpu_node_fits_host(const ModelConfig& config, const LoadOptions& load,
                                               const plan::MemoryModel& memory, const ParallelConfig& parallel,
                                               int64_t blocks, int block_size, const plan::HostMemory& host);

// The runners of an engine. Before any weight is loaded the memory model decides whether the
// deployment fits (plan/startup_check.h: the arithmetic `moeserve plan` prints), and a refusal
// says what to change; then the CPU runner (KV blocks from --kv-cache-memory), the CUDA runner
// (KV cache from --gpu-memory-utilization after its weights and workspace, vLLM's
// profile-then-allocate order) or the rank group. Logs the choice, the plan and the layout.
Result<EngineRunners> make_engine_runners(const RunnerSpec& spec, const EngineSizing& sizing);

// One sequence of up to max_tokens tokens (logits, generate): the model on one thread pool, the
// CUDA runner, or, with parallel flags, DP replica 0 of a RankGroup (the other replicas take
// part in every step with empty batches).
class SequenceBackend {
 public:
  const ModelConfig& config() const { return config_; }
  SequenceRunner& runner() { return *runner_; }

 private:
  friend Result<std::unique_ptr<SequenceBackend>> make_sequence_backend(const RunnerSpec& spec, int max_tokens);

  ModelConfig config_;
  LoadedModel loaded_;
  std::unique_ptr<Runner> device_runner_;  // CUDA
  std::unique_ptr<ThreadPool> pool_;
  ExecContext exec_;
  ParallelRunners parallel_;
  std::unique_ptr<SequenceRunner> runner_;  // last: destroyed before what it runs on
};

// Logs the layout it built when it is a parallel one (one rank logs nothing: the command's
// output is its result).
Result<std::unique_ptr<SequenceBackend>> make_sequence_backend(const RunnerSpec& spec, int max_tokens);

}  // namespace moeserve
