// The CPU reference backend behind the Runner seam: owns the loaded model (weights stay in the
// checkpoint's mmap), a worker thread pool and float32 paged KV memory of a fixed block count.
// How many blocks a byte budget buys is the memory model's figure (plan::MemoryModel::
// cpu_kv_blocks), computed by the caller, so `moeserve plan` and the engine agree exactly.
#pragma once

#include <memory>

#include "base/result.h"
#include "runtime/loaded_model.h"
#include "runtime/runner.h"

namespace moeserve {

struct CpuRunnerOptions {
  int num_kv_blocks = 0;  // > 0
  int block_size = 16;    // tokens per KV block, > 0
  int threads = 0;        // worker threads, 0 = all cores
};

Result<std::unique_ptr<Runner>> make_cpu_runner(LoadedModel model, const CpuRunnerOptions& options);

}  // namespace moeserve
