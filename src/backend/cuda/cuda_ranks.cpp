#include "backend/cuda/cuda_ranks.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "device/cuda/cuda_device.h"

namespace moeserve {

namespace {

// KV blocks per replica that every GPU can give each of its ranks: what gpu_memory_utilization
// leaves on a GPU after its ranks loaded, over the bytes a block costs all of them together.
Result<int> kv_blocks_from_memory(const std::vector<ModelRunner*>& ranks, double utilization) {
  int blocks = std::numeric_limits<int>::max();
  int max_device = 0;
  for (ModelRunner* rank : ranks) max_device = std::max(max_device, cuda_device(*rank).device_index());
  for (int device = 0; device <= max_device; ++device) {
    size_t per_block = 0;
    for (ModelRunner* rank : ranks) {
      if (cuda_device(*rank).device_index() == device) per_block += rank->kv_bytes_per_block();
    }
    if (per_block == 0) continue;
    MS_RETURN_IF_ERROR(cuda::use_device(device));
    const cuda::MemoryInfo memory = cuda::memory_info();
    blocks = std::min(blocks,
                      kv_blocks_within(DeviceMemory{.free_bytes = memory.free_bytes, .total_bytes = memory.total_bytes},
                                       utilization, per_block));
  }
  if (blocks <= 0) {
    return make_error("no GPU memory is left for the KV cache at --gpu-memory-utilization {} once every rank has "
                      "loaded: raise it, lower --max-num-batched-tokens or use fewer ranks per GPU",
                      utilization);
  }
  return blocks;
}

}  // namespace

Result<CudaRanks> make_cuda_ranks(const ModelConfig& config, const WeightSource* weights, uint64_t seed,
                                  const ParallelConfig& parallel, const CudaDeviceOptions& device_options,
                                  const ModelRunnerOptions& runner_options) {
  MS_ASSIGN_OR_RETURN(const std::vector<cuda::DeviceInfo> gpus, cuda::list_devices());
  if (gpus.empty()) return make_error("--device cuda: no CUDA device is visible");
  std::vector<std::unique_ptr<RankWorker>> workers;
  std::vector<ModelRunner*> ranks;
  for (int rank = 0; rank < parallel.world_size(); ++rank) {
    CudaDeviceOptions rank_device = device_options;
    rank_device.device_index = rank % static_cast<int>(gpus.size());
    rank_device.shard = parallel.shard_for(rank);
    rank_device.enforce_eager = true;  // the staged collectives wait on the host
    MS_ASSIGN_OR_RETURN(std::unique_ptr<CudaRunnerDevice> device,
                        CudaRunnerDevice::create(config, weights, seed, rank_device));
    ModelRunnerOptions rank_runner = runner_options;
    rank_runner.defer_kv_cache = true;
    rank_runner.capture_batch_sizes = 0;
    MS_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::create(std::move(device), rank_runner));
    ranks.push_back(runner.get());
    workers.push_back(std::make_unique<RankWorker>(rank % parallel.tensor_parallel_size, std::move(runner)));
  }
  CudaRanks built;
  built.num_kv_blocks = runner_options.num_kv_blocks;
  if (built.num_kv_blocks <= 0) {
    MS_ASSIGN_OR_RETURN(built.num_kv_blocks, kv_blocks_from_memory(ranks, runner_options.gpu_memory_utilization));
  }
  for (ModelRunner* rank : ranks) {
    MS_RETURN_IF_ERROR(cuda::use_device(cuda_device(*rank).device_index()));
    MS_RETURN_IF_ERROR(rank->allocate_kv_cache(built.num_kv_blocks));
  }
  built.summary = fmt::format(
      "{} ranks on {} GPU{} (rank r on GPU r mod {}), rank 0: {}, KV cache {} blocks x {} tokens (float32); "
      "collectives staged through the host, steps run eagerly",
      parallel.world_size(), std::min<int>(gpus.size(), parallel.world_size()), gpus.size() > 1 ? "s" : "", gpus.size(),
      cuda_device(*ranks.front()).describe(), built.num_kv_blocks, runner_options.block_size);
  built.executor = make_thread_ranks(parallel, std::move(workers));
  return built;
}

}  // namespace moeserve
