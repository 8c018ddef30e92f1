#include <cuda_runtime.h>

#include "device/cuda/cuda_device.h"
#include "device/cuda/saxpy.h"

namespace moeserve::cuda {

namespace {

Error cuda_error(const char* what, cudaError_t status) {
  return make_error("CUDA {} failed: {}", what, cudaGetErrorString(status));
}

}  // namespace

Status use_device(int index) {
  if (cudaError_t status = cudaSetDevice(index); status != cudaSuccess) return cuda_error("cudaSetDevice", status);
  return ok_status();
}

Result<std::vector<DeviceInfo>> list_devices() {
  int count = 0;
  if (cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
    return cuda_error("cudaGetDeviceCount", status);
  }
  std::vector<DeviceInfo> devices;
  for (int index = 0; index < count; ++index) {
    cudaDeviceProp props{};
    if (cudaError_t status = cudaGetDeviceProperties(&props, index); status != cudaSuccess) {
      return cuda_error("cudaGetDeviceProperties", status);
    }
    devices.push_back(DeviceInfo{index, props.name, props.major, props.minor, props.totalGlobalMem,
                                 props.multiProcessorCount});
  }
  return devices;
}

Result<std::vector<float>> saxpy(float a, const std::vector<float>& x, const std::vector<float>& y) {
  const int n = static_cast<int>(x.size());
  const size_t bytes = x.size() * sizeof(float);
  float* device_x = nullptr;
  float* device_y = nullptr;
  std::vector<float> result(y.size());
  cudaError_t status = cudaMalloc(&device_x, bytes);
  if (status == cudaSuccess) status = cudaMalloc(&device_y, bytes);
  if (status == cudaSuccess) status = cudaMemcpy(device_x, x.data(), bytes, cudaMemcpyHostToDevice);
  if (status == cudaSuccess) status = cudaMemcpy(device_y, y.data(), bytes, cudaMemcpyHostToDevice);
  if (status == cudaSuccess) {
    status = launch_saxpy(n, a, device_x, device_y);
  }
  if (status == cudaSuccess) status = cudaMemcpy(result.data(), device_y, bytes, cudaMemcpyDeviceToHost);
  cudaFree(device_x);
  cudaFree(device_y);
  if (status != cudaSuccess) return cuda_error("saxpy", status);
  return result;
}

}  // namespace moeserve::cuda
