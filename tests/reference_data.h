// Test helpers for reading the transformers-computed references (reference.safetensors) and
// comparing logits the way the fixtures' README defines: ‖out − ref‖ / ‖ref‖ per row.
#pragma once

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "loader/safetensors.h"

namespace moeserve::testing {

inline std::string fixture_model(const std::string& name) {
  return std::string(MOESERVE_TEST_DATA_DIR) + "/models/" + name;
}
inline std::string demo_model() { return std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny"; }

class Reference {
 public:
  explicit Reference(const std::string& path) {
    auto file = SafetensorsFile::open(path);
    if (!file.ok()) throw std::runtime_error(file.error().message);
    file_ = std::move(file.value());
  }
  bool has(const std::string& name) const { return file_->contains(name); }
  std::vector<int32_t> ids(const std::string& name) const {
    const TensorView view = file_->view(name);
    std::vector<int32_t> out(view.numel());
    for (int64_t i = 0; i < view.numel(); ++i) {
      int64_t value;
      std::memcpy(&value, view.as<char>() + i * 8, 8);
      out[i] = static_cast<int32_t>(value);
    }
    return out;
  }
  TensorView tensor(const std::string& name) const { return file_->view(name); }

 private:
  std::unique_ptr<SafetensorsFile> file_;
};

// Largest per-row relative error of `actual` [rows, vocab] against `expected`.
inline double max_row_relative_error(const float* actual, const float* expected, int64_t rows, int64_t vocab) {
  double worst = 0.0;
  for (int64_t row = 0; row < rows; ++row) {
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double a = actual[row * vocab + i], e = expected[row * vocab + i];
      diff += (a - e) * (a - e);
      norm += e * e;
    }
    worst = std::max(worst, std::sqrt(diff) / std::sqrt(norm));
  }
  return worst;
}

inline int32_t argmax(const float* row, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (row[i] > row[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

}  // namespace moeserve::testing
