// bench_latency_cuda.h in a CPU-only build (compiled instead of cli/cuda/): there is no CUDA
// benchmark. Not reached in practice: choose_backend refuses --device cuda in such a build.
#include "cli/bench_latency_cuda.h"

#include "cli/commands.h"

namespace moeserve::cli {

void run_bench_latency_cuda(const CudaLatencyArgs&) {
  fail("--device cuda: this moeserve was built without CUDA (no nvcc found)");
}

}  // namespace moeserve::cli
