// runtime/cuda_backend.h in a CPU-only build (compiled instead of backend/cuda/): there is no
// CUDA backend. make_runner refuses --device cuda before it would call make_runner here.
#include "runtime/cuda_backend.h"

namespace moeserve::cuda_backend {

bool compiled() { return false; }

std::string name() { return {}; }

Result<std::vector<Gpu>> list_gpus() { return std::vector<Gpu>{}; }

Result<BuiltRunner> make_runner(const std::string&, const ModelConfig&, const LoadOptions&, const RunnerOptions&) {
  return make_error("--device cuda: this moeserve was built without CUDA (no nvcc found)");
}

Result<BuiltRanks> make_ranks(const std::string&, const ModelConfig&, const LoadOptions&, const RunnerOptions&,
                              const ParallelConfig&) {
  return make_error("--device cuda: this moeserve was built without CUDA (no nvcc found)");
}

Result<std::unique_ptr<RankWorker>> make_rank(const std::string&, const ModelConfig&, const LoadOptions&,
                                              const RunnerOptions&, const ParallelConfig&, int) {
  return make_error("--device cuda: this moeserve was built without CUDA (no nvcc found)");
}

}  // namespace moeserve::cuda_backend
