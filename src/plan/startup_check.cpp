#include "plan/startup_check.h"

#include <algorithm>
#include <fstream>
#include <string>

#include <fmt/format.h>

namespace moeserve::plan {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The fix for weights that do not fit: fp8 if that alone would do, else the GPU count that would.
std::string weights_fix(const MemoryModel& model, const DeploymentShape& shape) {
  if (model.resolve(shape.dtype) != WeightDType::kFp8) {
    DeploymentShape fp8 = shape;
    fp8.dtype = WeightDType::kFp8;
    const auto planned = model.plan(fp8);
    if (planned.ok() && planned->fits) return "use --dtype fp8 (fp8 weights fit this layout)";
  }
  for (int tp = shape.tensor_parallel * 2; tp <= 64; tp *= 2) {
    DeploymentShape wider = shape;
    wider.tensor_parallel = tp;
    if (!model.validate(wider).ok()) continue;
    const auto planned = model.plan(wider);
    if (planned.ok() && planned->fits) {
      return fmt::format("needs {} GPUs (e.g. --tensor-parallel-size {}); `moeserve plan` compares the layouts",
                         wider.gpus(), tp);
    }
  }
  return "no layout of up to 64 GPUs fits; see `moeserve plan`";
}

}  // namespace

Result<int64_t> check_cpu_startup(const MemoryModel& model, int64_t kv_cache_bytes, int block_size, int max_model_len,
                                  int tensor_parallel, KvCacheDType kv_cache_dtype) {
  if (block_size <= 0) return make_error("--block-size must be positive, got {}", block_size);
  const int64_t blocks = model.cpu_kv_blocks(kv_cache_bytes, block_size, tensor_parallel, kv_cache_dtype);
  const int64_t needed = ceil_div(max_model_len, block_size);
  if (blocks >= needed) return blocks;
  const int64_t per_token = model.cpu_replica_kv_bytes_per_token(tensor_parallel, kv_cache_dtype);
  const int64_t needed_bytes = needed * block_size * per_token;
  return make_error(
      "the KV cache budget of {:.1f} MiB holds {} tokens ({} B per token over {} layers, {} blocks of {}), less than "
      "one {}-token sequence (max_model_len): use --kv-cache-memory {} (at least {:.1f} MiB) or lower --max-model-len "
      "to {}",
      kv_cache_bytes / kMiB, blocks * block_size, per_token, model.config().num_layers, blocks, block_size,
      max_model_len, needed_bytes, needed_bytes / kMiB, blocks * block_size);
}

HostMemory read_host_memory() {
  HostMemory host;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, unit);
    if (key == "MemTotal:") host.total_bytes = kib * 1024;
    if (key == "MemAvailable:") host.available_bytes = kib * 1024;
  }
  // cgroup v2: "max" or a byte count; what the group has left is that limit less its usage.
  std::ifstream max_file("/sys/fs/cgroup/memory.max");
  std::ifstream current_file("/sys/fs/cgroup/memory.current");
  int64_t limit = 0;
  int64_t current = 0;
  if (max_file >> limit && current_file >> current && limit > 0) {
    host.total_bytes = host.total_bytes > 0 ? std::min(host.total_bytes, limit) : limit;
    const int64_t headroom = std::max<int64_t>(0, limit - current);
    host.available_bytes = host.available_bytes > 0 ? std::min(host.available_bytes, headroom) : headroom;
  }
  return host;
}

Status check_cpu_kv_fits_host(int64_t kv_bytes, int replicas, const HostMemory& host) {
  if (host.available_bytes <= 0 || kv_bytes <= host.available_bytes) return ok_status();
  return make_error("--kv-cache-memory: the KV cache needs {:.1f} GiB{} but this machine has {:.1f} GiB of memory "
                    "available ({:.1f} GiB total): lower --kv-cache-memory below {:.1f} GiB{}",
                    kv_bytes / kGiB, replicas > 1 ? fmt::format(" ({} data-parallel replicas)", replicas) : "",
                    host.available_bytes / kGiB, host.total_bytes / kGiB, host.available_bytes / kGiB / replicas,
                    replicas > 1 ? " (it is per replica)" : "");
}

Status check_cpu_weights_fit_host(int64_t weight_bytes, int64_t kv_bytes, const HostMemory& host,
                                  const char* packed_as) {
  if (host.available_bytes <= 0 || weight_bytes + kv_bytes <= host.available_bytes) return ok_status();
  return make_error("the CPU backend needs {:.1f} GiB of memory for the weights (packed as {}) and {:.1f} GiB for "
                    "the KV cache, but this machine has {:.1f} GiB available ({:.1f} GiB total): serve the model on "
                    "GPUs (--device cuda; `moeserve plan` says which layout fits) or on a machine with more memory",
                    weight_bytes / kGiB, packed_as, kv_bytes / kGiB, host.available_bytes / kGiB,
                    host.total_bytes / kGiB);
}

Result<MemoryBreakdown> check_gpu_startup(const MemoryModel& model, const DeploymentShape& shape) {
  MS_RETURN_IF_ERROR(model.validate(shape));
  MS_ASSIGN_OR_RETURN(MemoryBreakdown memory, model.plan(shape));
  if (memory.fits) return memory;
  if (!memory.weights_fit) return make_error("{}: {}", memory.verdict, weights_fix(model, shape));
  std::string fix;
  const int64_t overhead = memory.activation_bytes + memory.runtime_bytes + memory.comm_buffer_bytes;
  if (memory.kv_tokens >= shape.block_size) {
    fix = fmt::format("lower --max-model-len to {} or raise --gpu-memory-utilization (now {:.2f}){}", memory.kv_tokens,
                      shape.gpu_memory_utilization,
                      shape.kv_cache_dtype == KvCacheDType::kFp8
                          ? ""
                          : ", or store the KV cache as fp8 (--kv-cache-dtype fp8: 4x the tokens of auto's float32)");
  } else if (memory.weights_bytes + overhead >= memory.budget_bytes && overhead > memory.weights_bytes) {
    fix =
        fmt::format("the step arena of --max-num-batched-tokens {} takes {:.2f} GiB (beside the CUDA runtime's {:.2f} "
                    "GiB): lower it",
                    shape.max_num_batched_tokens, memory.activation_bytes / kGiB, memory.runtime_bytes / kGiB);
  } else {
    fix = weights_fix(model, shape);
  }
  return make_error("{} ({:.1f} GiB usable per GPU): {}", memory.verdict, memory.budget_bytes / kGiB, fix);
}

}  // namespace moeserve::plan
