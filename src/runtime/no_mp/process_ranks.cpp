#include "runtime/headless_node.h"
#include "runtime/process_ranks.h"

namespace moeserve {

Result<BuiltProcessRanks> make_process_ranks(const std::string&, const LoadOptions&, const ParallelConfig&, int, int,
                                             const std::optional<cuda_backend::RunnerOptions>&) {
  return make_error("--distributed-executor-backend mp: this moeserve was built without gloo and ZeroMQ "
                    "(apt-get install libgloo-dev libzmq3-dev cppzmq-dev, then reconfigure); use threads");
}

int run_rank_worker(const std::string&) { return 1; }

Result<int> run_headless_node(const std::string&, const ParallelConfig&) {
  return make_error("--headless: this moeserve was built without gloo and ZeroMQ (apt-get install libgloo-dev "
                    "libzmq3-dev cppzmq-dev, then reconfigure)");
}

}  // namespace moeserve
