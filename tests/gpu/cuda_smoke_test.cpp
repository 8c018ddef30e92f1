// GPU smoke test (label `gpu`, run on the device machine): a GPU is visible and a kernel built
// by this project's nvcc wiring computes the same saxpy as the CPU.
#include <gtest/gtest.h>

#include "device/cuda/cuda_device.h"

namespace moeserve {
namespace {

TEST(CudaSmoke, DeviceIsVisible) {
  auto devices = cuda::list_devices();
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_FALSE(devices->empty());
  EXPECT_GE(devices->front().compute_major, 9) << devices->front().name;
  EXPECT_GT(devices->front().total_memory_bytes, size_t{1} << 30);
}

TEST(CudaSmoke, SaxpyMatchesCpu) {
  std::vector<float> x(100000), y(100000);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<float>(i % 97) * 0.25f;
    y[i] = static_cast<float>(i % 13) - 6.0f;
  }
  auto result = cuda::saxpy(1.5f, x, y);
  ASSERT_TRUE(result.ok()) << result.error().message;
  for (size_t i = 0; i < x.size(); ++i) ASSERT_FLOAT_EQ((*result)[i], 1.5f * x[i] + y[i]) << i;
}

}  // namespace
}  // namespace moeserve
