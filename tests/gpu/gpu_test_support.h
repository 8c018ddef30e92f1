// Helpers for the gpu-labelled tests: device buffers filled from host vectors, read back, NaN
// poisoning (so an output element a kernel forgot to write fails the comparison), random inputs
// drawn fresh per case, and the relative error ‖a − b‖ / ‖b‖.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/dtype.h"
#include "device/cuda/device_memory.h"
#include "kernels/ops.h"

namespace moeserve::testing {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stream = cuda::CudaStream::create(0);
    ASSERT_TRUE(stream.ok()) << stream.error().message;
    stream_ = std::make_unique<cuda::CudaStream>(std::move(stream.value()));
    exec_ = cuda::GpuExec{stream_->stream(), stream_->blas()};
  }

  template <typename T>
  T* upload(const std::vector<T>& host) {
    auto buffer = cuda::DeviceBuffer::allocate(std::max<size_t>(1, host.size()) * sizeof(T));
    MS_CHECK(buffer.ok());
    cuda::copy_to_device(buffer->data(), host.data(), host.size() * sizeof(T), exec_.stream);
    T* ptr = buffer->template as<T>();
    buffers_.push_back(std::move(buffer.value()));
    return ptr;
  }
  // count elements of T, every byte 0xff (NaN for floats, -1 for ints).
  template <typename T>
  T* poisoned(size_t count) {
    auto buffer = cuda::DeviceBuffer::allocate(std::max<size_t>(1, count) * sizeof(T));
    MS_CHECK(buffer.ok());
    std::vector<unsigned char> bytes(count * sizeof(T), 0xff);
    cuda::copy_to_device(buffer->data(), bytes.data(), bytes.size(), exec_.stream);
    stream_->synchronize();
    T* ptr = buffer->template as<T>();
    buffers_.push_back(std::move(buffer.value()));
    return ptr;
  }
  template <typename T>
  std::vector<T> download(const T* device, size_t count) {
    std::vector<T> host(count);
    cuda::copy_to_host(host.data(), device, count * sizeof(T), exec_.stream);
    stream_->synchronize();
    cuda::check_last_error("test download");
    return host;
  }

  std::vector<float> random_floats(size_t count, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> out(count);
    for (float& v : out) v = normal(rng_);
    return out;
  }
  // Random bf16 bits and the float32 values they hold.
  std::vector<uint16_t> random_bf16(size_t count, float scale, std::vector<float>* as_f32 = nullptr) {
    std::vector<uint16_t> bits(count);
    std::normal_distribution<float> normal(0.0f, scale);
    for (auto& b : bits) b = f32_to_bf16(normal(rng_));
    if (as_f32 != nullptr) {
      as_f32->resize(count);
      for (size_t i = 0; i < count; ++i) (*as_f32)[i] = bf16_to_f32(bits[i]);
    }
    return bits;
  }
  int random_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::unique_ptr<cuda::CudaStream> stream_;
  cuda::GpuExec exec_;
  std::vector<cuda::DeviceBuffer> buffers_;
  std::mt19937 rng_{std::random_device{}()};
};

// ‖actual − expected‖ / ‖expected‖; any NaN in actual gives infinity.
inline double relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  MS_CHECK(actual.size() == expected.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    diff += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
    norm += double(expected[i]) * expected[i];
  }
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

}  // namespace moeserve::testing
