// The CUDA backend as runtime/make_runner sees it. Declared in every build so that the factory
// has no #ifdef: backend/cuda/cuda_backend.cpp implements it over CudaRunnerDevice when CUDA is
// compiled in, backend/no_cuda/cuda_backend.cpp (CPU-only builds) answers that there is none.
// CMake compiles exactly one of the two (backend/CMakeLists.txt). Only make_runner.cpp calls
// these; everything else goes through runtime/make_runner.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/config.h"
#include "runtime/loaded_model.h"
#include "runtime/parallel_config.h"
#include "runtime/rank_group.h"
#include "runtime/runner.h"

namespace moeserve::cuda_backend {

// Whether this build has the CUDA backend (nvcc was found at configure time).
bool compiled();
// The backend as --version names it, with its GPU architecture ("cuda sm_90a"); empty without.
std::string name();

struct Gpu {
  std::string name;
  int64_t total_memory_bytes = 0;
};
// The GPUs the CUDA runtime sees (none in a CPU-only build); an error when it cannot be asked.
Result<std::vector<Gpu>> list_gpus();

// The CUDA runner's options (ModelRunnerOptions and CudaDeviceOptions) without the device types.
struct RunnerOptions {
  int num_kv_blocks = 0;                // > 0: exactly this many; 0: from gpu_memory_utilization
  float gpu_memory_utilization = 0.9f;  // fraction of the GPU's memory the runner may hold
  int block_size = 16;
  int max_num_batched_tokens = 8192;  // rows per forward pass
  bool enforce_eager = false;         // no CUDA graphs
  int capture_batch_sizes = 0;        // decode graphs captured at start-up for batch sizes 1..this
  int max_logit_rows = 0;             // logit rows per pass at most (0: max_num_batched_tokens)
};

struct BuiltRunner {
  std::unique_ptr<Runner> runner;
  // What was built, for the startup log: weight bytes, activation precision, KV cache.
  std::string summary;
};

// A ModelRunner on GPU 0 over `config` (already parsed, with --hf-overrides) and the checkpoint
// of model_dir, or dummy weights (make_cuda_runner).
Result<BuiltRunner> make_runner(const std::string& model_dir, const ModelConfig& config, const LoadOptions& load,
                                const RunnerOptions& options);

struct BuiltRanks {
  std::unique_ptr<RankExecutor> executor;
  int num_kv_blocks = 0;  // per DP replica
  std::string summary;    // for the start-up log
};

// The ranks of `parallel` (TP × DP, expert parallel or not, EPLB) as CUDA runners on threads of
// this process, each loading its shard of model_dir's checkpoint or, with --load-format dummy,
// making random weights of its shard's shape on its GPU (backend/cuda/cuda_ranks.h).
// options.num_kv_blocks = 0 sizes the KV caches from gpu_memory_utilization; enforce_eager and
// capture_batch_sizes do not apply (ranks run eagerly).
Result<BuiltRanks> make_ranks(const std::string& model_dir, const ModelConfig& config, const LoadOptions& load,
                              const RunnerOptions& options, const ParallelConfig& parallel);

// Global rank `rank` of `parallel` as a CUDA RankWorker of this process (a worker process of
// --distributed-executor-backend mp): its shard of model_dir's checkpoint (or dummy weights) on
// GPU rank mod the visible GPUs. options.num_kv_blocks = 0: no KV cache until
// runner().allocate_kv_cache (the engine sizes the layout's caches together).
Result<std::unique_ptr<RankWorker>> make_rank(const std::string& model_dir, const ModelConfig& config,
                                              const LoadOptions& load, const RunnerOptions& options,
                                              const ParallelConfig& parallel, int rank);

}  // namespace moeserve::cuda_backend
