// The fixture of the CPU step-op contract tests (ops_contract_test, paged_cache_contract_test):
// seeded random inputs, TensorViews over host vectors and an ExecContext of 2 threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "kernels/ops.h"

namespace moeserve::testing {

class OpsContractTest : public ::testing::Test {
 protected:
  std::vector<float> random_floats(size_t count, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(count);
    for (float& x : v) x = dist(rng_);
    return v;
  }
  // bf16 bits and their float32 values.
  std::vector<uint16_t> random_bf16(size_t count, std::vector<float>* as_f32, float scale = 1.0f) {
    std::vector<uint16_t> bits(count);
    as_f32->resize(count);
    const std::vector<float> v = random_floats(count, scale);
    for (size_t i = 0; i < count; ++i) {
      bits[i] = f32_to_bf16(v[i]);
      (*as_f32)[i] = bf16_to_f32(bits[i]);
    }
    return bits;
  }
  static TensorView f32(std::vector<float>& v, Shape shape) { return TensorView{v.data(), DType::kF32, shape}; }
  static TensorView bf16(std::vector<uint16_t>& v, Shape shape) { return TensorView{v.data(), DType::kBF16, shape}; }

  static double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double most = 0.0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) most = std::max(most, double(std::abs(a[i] - b[i])));
    return most;
  }

  std::mt19937 rng_{1234};
  ThreadPool pool_{2};
  ExecContext ctx_{&pool_};
};

}  // namespace moeserve::testing
