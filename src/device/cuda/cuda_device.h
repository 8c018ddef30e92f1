// The CUDA side of device/: which GPUs are visible and what they are. The only place besides
// kernels/cuda and comm/nccl that touches the CUDA runtime; this header itself is plain C++ so
// the rest of the code can include it without CUDA headers. Built only when nvcc is present.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace moeserve::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

// Every visible CUDA device; an error (not a crash) when there is no driver or no GPU.
Result<std::vector<DeviceInfo>> list_devices();

// Makes device `index` the calling thread's current device (cudaSetDevice): a thread that runs a
// rank on another GPU than device 0 calls it first.
Status use_device(int index);

// Runs y[i] = a * x[i] + y[i] on the device (a smoke test of the toolchain: upload, kernel,
// download). Returns the device result.
Result<std::vector<float>> saxpy(float a, const std::vector<float>& x, const std::vector<float>& y);

}  // namespace moeserve::cuda
