// The GPU catalog: real accelerator parts with the memory a serving engine can allocate on
// them, whether they have FP8 tensor cores, and how they talk to each other. Each entry names
// its source. `parse_gpu_set("8xH200")` resolves a --gpus argument against it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace moeserve::plan {

// Invariant: memory_bytes > 0, gpus_per_node ≥ 1, name unique in the catalog.
struct GpuSpec {
  std::string name;                  // canonical, e.g. "H200"
  std::vector<std::string> aliases;  // also accepted on the command line (case-insensitive)
  std::string description;           // e.g. "NVIDIA H200 SXM 141 GB HBM3e"
  int64_t memory_bytes = 0;          // memory the CUDA/ROCm runtime can hand out
  bool fp8_tensor_cores = false;     // native FP8 GEMMs (Hopper, Ada, Blackwell, CDNA3)
  std::string interconnect;          // e.g. "NVLink 4 (900 GB/s)"
  double interconnect_gb_per_s = 0;  // per GPU, one direction summed over links
  int gpus_per_node = 8;             // the usual server; tensor parallelism stays inside one
  std::string source;
};

const std::vector<GpuSpec>& gpu_catalog();

struct GpuSet {
  const GpuSpec* gpu = nullptr;
  int count = 0;
  std::string label() const;  // "8xH200"
};

// "8xH200", "H100" (one), "16x h100-sxm". Unknown parts list the catalog.
Result<GpuSet> parse_gpu_set(const std::string& text);
Result<const GpuSpec*> find_gpu(const std::string& name);

}  // namespace moeserve::plan
