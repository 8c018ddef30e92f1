// Start-up checks for `moeserve serve`: before any weight is loaded, the memory model that
// `moeserve plan` prints decides whether the deployment can run, and a refusal carries the plan's
// explanation plus a concrete fix instead of an out-of-memory error minutes later.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "plan/memory_model.h"

namespace moeserve::plan {

// The CPU backend: KV blocks (float32 entries, or e4m3 bytes with kv_cache_dtype kFp8) bought by
// a DP replica's byte budget over its TP ranks (MemoryModel::cpu_kv_blocks, the figure each rank
// allocates). Refused when they cannot hold one max_model_len sequence; the message names the
// budget that would.
Result<int64_t> check_cpu_startup(const MemoryModel& model, int64_t kv_cache_bytes, int block_size, int max_model_len,
                                  int tensor_parallel = 1, KvCacheDType kv_cache_dtype = KvCacheDType::kF32);

// The host memory a CPU KV cache can take: MemAvailable and MemTotal from /proc/meminfo, lowered
// to the cgroup's memory.max headroom where one is set (a container's limit, which meminfo does
// not show). 0 where unknown.
struct HostMemory {
  int64_t total_bytes = 0;
  int64_t available_bytes = 0;
};
HostMemory read_host_memory();

// The CPU backend zero-fills its whole KV cache at start-up: `kv_bytes` (every replica's blocks
// together) more than the host has available would end in an allocation failure or the OOM
// killer, so it is refused first, saying how much memory there is and what to lower.
Status check_cpu_kv_fits_host(int64_t kv_bytes, int replicas, const HostMemory& host);

// The CPU backend packs its weights into host memory as `packed_as` (bf16, fp8 or float32;
// `weight_bytes`: every rank's copy together); they and the KV cache must fit in what the host
// has available, checked before anything is loaded.
Status check_cpu_weights_fit_host(int64_t weight_bytes, int64_t kv_bytes, const HostMemory& host,
                                  const char* packed_as = "bf16");

// A GPU deployment: the plan of `shape` (device_memory_bytes set). Refused when the weights do not
// fit or the KV cache cannot hold one max_model_len sequence, with the fix: fp8 weights, more
// GPUs, a shorter --max-model-len or a higher --gpu-memory-utilization.
Result<MemoryBreakdown> check_gpu_startup(const MemoryModel& model, const DeploymentShape& shape);

}  // namespace moeserve::plan
