#include "cli/sequence_backend.h"

#include <spdlog/spdlog.h>

#ifdef MOESERVE_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace moeserve::cli {

Result<std::unique_ptr<SequenceBackend>> SequenceBackend::create(const EngineFlags& flags, int max_tokens) {
  MS_ASSIGN_OR_RETURN(LoadOptions options, flags.load_options());
  MS_ASSIGN_OR_RETURN(ParallelConfig parallel, flags.parallel_config());
  auto backend = std::make_unique<SequenceBackend>();
  if (flags.use_cuda()) {
#ifdef MOESERVE_HAVE_CUDA
    MS_ASSIGN_OR_RETURN(backend->device_runner_,
                        make_cuda_runner(flags.model_dir, options,
                                         CudaRunnerOptions{.num_kv_blocks = SequenceRunner::blocks_for(max_tokens),
                                                           .block_size = SequenceRunner::kBlockSize}));
    backend->config_ = backend->device_runner_->config();
    backend->runner_ = std::make_unique<SequenceRunner>(*backend->device_runner_, max_tokens);
    return backend;
#else
    return make_error("--device cuda: this moeserve was built without CUDA (no nvcc found)");
#endif
  }
  MS_ASSIGN_OR_RETURN(backend->loaded_, load_model(flags.model_dir, options));
  backend->config_ = backend->loaded_.model->config();
  if (parallel.is_single()) {
    backend->pool_ = std::make_unique<ThreadPool>(flags.threads);
    backend->exec_ = ExecContext{backend->pool_.get()};
    backend->runner_ = std::make_unique<SequenceRunner>(*backend->loaded_.model, backend->exec_, max_tokens);
    return backend;
  }
  backend->loaded_.model.reset();  // each rank loads its own shard from the weights
  MS_ASSIGN_OR_RETURN(
      backend->parallel_,
      make_parallel_runners(std::move(backend->loaded_.weights), backend->config_,
                            ParallelRunnerOptions{.parallel = parallel,
                                                  .num_kv_blocks = SequenceRunner::blocks_for(max_tokens),
                                                  .block_size = SequenceRunner::kBlockSize}));
  spdlog::info("parallel layout: {}", backend->parallel_.group->describe_layout());
  backend->runner_ = std::make_unique<SequenceRunner>(*backend->parallel_.replicas[0], max_tokens);
  return backend;
}

}  // namespace moeserve::cli
