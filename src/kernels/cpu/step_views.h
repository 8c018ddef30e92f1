// TensorViews over the raw pointers of a step op's arguments (kernels/ops.h, level 2), so the CPU
// step ops compose the tensor ops instead of restating their math.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace moeserve::ops {

// rows × cols float32 at data (rows are cols apart).
inline TensorView f32_matrix(const float* data, int64_t rows, int64_t cols) {
  return TensorView{const_cast<float*>(data), DType::kF32, Shape{rows, cols}};
}
// rows × cols bf16 (weights) at data.
inline TensorView bf16_matrix(const uint16_t* data, int64_t rows, int64_t cols) {
  return TensorView{const_cast<uint16_t*>(data), DType::kBF16, Shape{rows, cols}};
}
// rows × cols fp8 e4m3 (block-scaled weights) at data.
inline TensorView fp8_matrix(const uint8_t* data, int64_t rows, int64_t cols) {
  return TensorView{const_cast<uint8_t*>(data), DType::kF8E4M3, Shape{rows, cols}};
}
inline TensorView bf16_vector(const uint16_t* data, int64_t size) {
  return TensorView{const_cast<uint16_t*>(data), DType::kBF16, Shape{size}};
}
// A step op's weight vector [size]: its float32 field when set, else its bf16 one (null: no view).
inline TensorView weight_vector(const uint16_t* bf16, const float* f32, int64_t size) {
  if (f32 != nullptr) return TensorView{const_cast<float*>(f32), DType::kF32, Shape{size}};
  return bf16 != nullptr ? bf16_vector(bf16, size) : TensorView{};
}

}  // namespace moeserve::ops
