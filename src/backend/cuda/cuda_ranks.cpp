#include "backend/cuda/cuda_ranks.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "device/cuda/cuda_device.h"

namespace moeserve {

Result<std::unique_ptr<RankWorker>> make_cuda_rank(const ModelConfig& config, const WeightSource* weights,
                                                   uint64_t seed, const ParallelConfig& parallel, int rank,
                                                   const CudaDeviceOptions& device_options,
                                                   const ModelRunnerOptions& runner_options) {
  MS_ASSIGN_OR_RETURN(const std::vector<cuda::DeviceInfo> gpus, cuda::list_devices());
  if (gpus.empty()) return make_error("--device cuda: no CUDA device is visible");
  CudaDeviceOptions rank_device = device_options;
  rank_device.device_index = rank % static_cast<int>(gpus.size());
  rank_device.shard = parallel.shard_for(rank);
  rank_device.enforce_eager = true;  // the staged collectives wait on the host
  MS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunnerDevice> device,
                      CudaRunnerDevice::create(config, weights, seed, rank_device));
  ModelRunnerOptions rank_runner = runner_options;
  rank_runner.defer_kv_cache = runner_options.num_kv_blocks <= 0;
  rank_runner.capture_batch_sizes = 0;
  MS_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::create(std::move(device), rank_runner));
  return std::make_unique<RankWorker>(rank % parallel.tensor_parallel_size, std::move(runner));
}

namespace {

// The start-up line of CUDA ranks: where they run, what rank 0 holds.
std::string describe_cuda_ranks(const ParallelConfig& parallel, ModelRunner& first, int num_kv_blocks) {
  const auto gpus = cuda::list_devices();
  const int visible = gpus.ok() ? static_cast<int>(gpus->size()) : 0;
  return fmt::format("{} ranks on {} GPU{} (rank r on GPU r mod {}), rank 0: {}, KV cache {} blocks x {} tokens ({}); "
                     "collectives staged through the host, steps run eagerly",
                     parallel.world_size(), std::min(visible, parallel.world_size()), visible > 1 ? "s" : "", visible,
                     cuda_device(first).describe(), num_kv_blocks, first.block_size(),
                     cuda_device(first).kv_element_name());
}

}  // namespace

Result<CudaRanks> make_cuda_ranks(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                  const ParallelConfig& parallel, const CudaDeviceOptions& device_options,
                                  const ModelRunnerOptions& runner_options) {
  std::vector<std::unique_ptr<RankWorker>> workers;
  for (int rank = 0; rank < parallel.world_size(); ++rank) {
    MS_ASSIGN_OR_RETURN(auto worker,
                        make_cuda_rank(config, weights, seed, parallel, rank, device_options, runner_options));
    workers.push_back(std::move(worker));
  }
  CudaRanks built;
  built.num_kv_blocks = runner_options.num_kv_blocks;
  if (built.num_kv_blocks <= 0) {
    // Every rank's GPU after all of them have loaded and profiled their largest step.
    std::vector<RankMemory> memory;
    for (const auto& worker : workers) {
      RunnerDevice& device = worker->runner().device();
      worker->bind_thread();
      memory.push_back(RankMemory{.gpu = std::to_string(device.device_index()),
                                  .memory = *device.memory(),
                                  .bytes_per_block = worker->runner().kv_bytes_per_block()});
    }
    MS_ASSIGN_OR_RETURN(built.num_kv_blocks, kv_blocks_shared(memory, runner_options.gpu_memory_utilization));
    for (const auto& worker : workers) {
      worker->bind_thread();
      MS_RETURN_IF_ERROR(worker->runner().allocate_kv_cache(built.num_kv_blocks));
    }
  }
  built.summary = describe_cuda_ranks(parallel, workers.front()->runner(), built.num_kv_blocks);
  built.executor = make_thread_ranks(parallel, std::move(workers));
  return built;
}

}  // namespace moeserve
