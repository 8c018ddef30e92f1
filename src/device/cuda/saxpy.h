// Device-side smoke kernel: y[i] = a * x[i] + y[i] for i < n, on device pointers.
#pragma once

#include <cuda_runtime.h>

namespace moeserve::cuda {

cudaError_t launch_saxpy(int n, float a, const float* x, float* y);

}  // namespace moeserve::cuda
