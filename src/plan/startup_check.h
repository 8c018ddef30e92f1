// Start-up checks for `moeserve serve`: before any weight is loaded, the memory model that
// `moeserve plan` prints decides whether the deployment can run, and a refusal carries the plan's
// explanation plus a concrete fix instead of an out-of-memory error minutes later.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "plan/memory_model.h"

namespace moeserve::plan {

// The CPU backend: float32 KV blocks bought by a byte budget (MemoryModel::cpu_kv_blocks, the
// figure the runner allocates). Refused when they cannot hold one max_model_len sequence; the
// message names the budget that would.
Result<int64_t> check_cpu_startup(const MemoryModel& model, int64_t kv_cache_bytes, int block_size,
                                  int max_model_len);

// A GPU deployment: the plan of `shape` (device_memory_bytes set). Refused when the weights do not
// fit or the KV cache cannot hold one max_model_len sequence, with the fix: fp8 weights, more
// GPUs, a shorter --max-model-len or a higher --gpu-memory-utilization.
Result<MemoryBreakdown> check_gpu_startup(const MemoryModel& model, const DeploymentShape& shape);

}  // namespace moeserve::plan
