// `moeserve bench latency --device cuda`: decode speed at several batch sizes and a large
// prefill on the CUDA runner, next to the ceilings of the same GPU measured in the same run
// (device-to-device copy bandwidth, cuBLAS bf16 GEMM rate) and the achieved bandwidth of the
// kernels that dominate a decode step. Declared for every build; defined by cli/cuda/ in CUDA
// builds and by cli/no_cuda/ (a refusal) in CPU-only ones.
#pragma once

#include <string>
#include <vector>

#include "runtime/make_runner.h"

namespace moeserve::cli {

struct CudaLatencyArgs {
  const RunnerSpec* spec = nullptr;  // the model (its config parsed once by the command) and --dtype
  int input_len = 128;
  int output_len = 64;
  int num_iters = 3;
  std::vector<int> batch_sizes = {1};
  int prefill_batch = 8;   // the prefill measurement: prefill_batch sequences ×
  int prefill_len = 1024;  // prefill_len tokens in one step (0: skip)
  float gpu_memory_utilization = 0.9f;
  int max_num_batched_tokens = 8192;  // rows per forward pass (the workspace is sized for it)
  bool enforce_eager = false;       // no CUDA graphs for the decode steps
  std::string output_json;
};

// Runs the benchmark and prints (and optionally writes) its JSON. The command calls it only when
// choose_backend picked CUDA, which a CPU-only build refuses first.
void run_bench_latency_cuda(const CudaLatencyArgs& args);

}  // namespace moeserve::cli
