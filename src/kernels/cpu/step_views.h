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
inline TensorView f32_vector(const float* data, int64_t size) {
  return TensorView{const_cast<float*>(data), DType::kF32, Shape{size}};
}

}  // namespace moeserve::ops
