// runtime/cuda_backend.h in a CUDA build: the CUDA runtime's device list, and ModelRunners over
// CudaRunnerDevices.
#include "runtime/cuda_backend.h"

#include <fmt/format.h>

#include "device/cuda/cuda_device.h"
#include "backend/cuda/cuda_ranks.h"
#include "backend/cuda/cuda_runner_device.h"
#include "comm/nccl/nccl_communicator.h"

namespace moeserve::cuda_backend {

bool compiled() { return true; }

// The architecture CMake compiles the kernels for (CMAKE_CUDA_ARCHITECTURES).
std::string name() { return "cuda sm_90a"; }

Result<std::vector<Gpu>> list_gpus() {
  MS_ASSIGN_OR_RETURN(const std::vector<cuda::DeviceInfo> devices, cuda::list_devices());
  std::vector<Gpu> gpus;
  for (const cuda::DeviceInfo& device : devices) {
    gpus.push_back(Gpu{.name = device.name, .total_memory_bytes = static_cast<int64_t>(device.total_memory_bytes)});
  }
  return gpus;
}

namespace {

ModelRunnerOptions model_runner_options(const RunnerOptions& options) {
  return ModelRunnerOptions{.num_kv_blocks = options.num_kv_blocks,
                            .gpu_memory_utilization = options.gpu_memory_utilization,
                            .block_size = options.block_size,
                            .max_num_batched_tokens = options.max_num_batched_tokens,
                            .max_logit_rows = options.max_logit_rows,
                            .capture_batch_sizes = options.capture_batch_sizes};
}

}  // namespace

Result<BuiltRunner> make_runner(const std::string& model_dir, const ModelConfig& config, const LoadOptions& load,
                                const RunnerOptions& options) {
  MS_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner,
                      make_cuda_runner(model_dir, config, load,
                                       CudaDeviceOptions{.enforce_eager = options.enforce_eager},
                                       model_runner_options(options)));
  BuiltRunner built;
  built.summary = fmt::format("{}, KV cache {} blocks x {} tokens ({})", cuda_device(*runner).describe(),
                              runner->num_kv_blocks(), runner->block_size(), cuda_device(*runner).kv_element_name());
  built.runner = std::move(runner);
  return built;
}

Result<BuiltRanks> make_ranks(const std::string& model_dir, const ModelConfig& config, const LoadOptions& load,
                              const RunnerOptions& options, const ParallelConfig& parallel) {
  MS_ASSIGN_OR_RETURN(const CudaDeviceOptions device, cuda_device_options(config, load, CudaDeviceOptions{}));
  // The checkpoint (each rank copies its shard to its GPU), or none: dummy weights are made on the GPUs.
  std::unique_ptr<WeightSource> weights;
  if (load.load_format != LoadFormat::kDummy) {
    MS_ASSIGN_OR_RETURN(weights, open_weights(model_dir, load));
  }
  MS_ASSIGN_OR_RETURN(CudaRanks ranks, make_cuda_ranks(config, weights.get(), load.seed, parallel, device,
                                                       model_runner_options(options)));
  return BuiltRanks{
      .executor = std::move(ranks.executor), .num_kv_blocks = ranks.num_kv_blocks, .summary = std::move(ranks.summary)};
}

Result<std::unique_ptr<RankWorker>> make_rank(const std::string& model_dir, const ModelConfig& config,
                                              const LoadOptions& load, const RunnerOptions& options,
                                              const ParallelConfig& parallel, int rank) {
  // Alone in its process: the TP group over NCCL where the build has it.
  MS_ASSIGN_OR_RETURN(const CudaDeviceOptions device,
                      cuda_device_options(config, load, CudaDeviceOptions{.nccl = NcclCommunicator::available()}));
  std::unique_ptr<WeightSource> weights;
  if (load.load_format != LoadFormat::kDummy) {
    MS_ASSIGN_OR_RETURN(weights, open_weights(model_dir, load));
  }
  return make_cuda_rank(config, weights.get(), load.seed, parallel, rank, device, model_runner_options(options));
}

}  // namespace moeserve::cuda_backend
