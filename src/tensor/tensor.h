// TensorView: a non-owning, dense, row-major view of memory with a dtype and a shape (what
// kernels take). Tensor: an owning host buffer (64-byte aligned) with its view. Views never
// outlive the memory they point into: weights point into the checkpoint's mmap, activations
// into a Tensor owned by the runner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "base/check.h"
#include "base/dtype.h"

namespace moeserve {

enum class DeviceKind : uint8_t { kCpu, kCuda };

class Shape {
 public:
  static constexpr int kMaxRank = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  static Shape from_span(std::span<const int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int axis) const {
    MS_CHECK(axis >= 0 && axis < rank_);
    return dims_[axis];
  }
  int64_t numel() const;
  std::span<const int64_t> dims() const { return {dims_.data(), static_cast<size_t>(rank_)}; }
  bool operator==(const Shape& other) const;
  std::string to_string() const;  // "[4, 64]"

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  DeviceKind device = DeviceKind::kCpu;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int axis) const { return shape[axis]; }
  // Elements per index of axis 0 (a "row" of a 2-D or higher tensor).
  int64_t row_size() const {  // the product of the dims after the first (also with zero rows)
    int64_t size = 1;
    for (int axis = 1; axis < shape.rank(); ++axis) size *= shape[axis];
    return size;
  }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // View of rows [begin, begin + count) along axis 0.
  TensorView rows(int64_t begin, int64_t count) const;
  // Same memory, another shape with the same element count.
  TensorView reshaped(Shape new_shape) const;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // zero-filled host memory
  static Tensor zeros_f32(Shape shape) { return Tensor(DType::kF32, shape); }
  // Host memory left unwritten, for a caller about to overwrite every element (a step's logits
  // copied back from the GPU: zeroing 8 MiB first cost a measurable share of a decode step).
  static Tensor uninitialized(DType dtype, Shape shape);

  const TensorView& view() const { return view_; }
  const Shape& shape() const { return view_.shape; }
  int64_t numel() const { return view_.numel(); }
  float* f32() const {
    MS_CHECK(view_.dtype == DType::kF32);
    return view_.as<float>();
  }
  // Reshapes in place when the element count is unchanged, reallocating (zeroed) otherwise.
  void resize(Shape shape);

 private:
  void allocate(Shape shape, bool zero);

  struct FreeDeleter {
    void operator()(void* ptr) const;
  };
  std::unique_ptr<void, FreeDeleter> storage_;
  size_t capacity_bytes_ = 0;
  TensorView view_;
};

}  // namespace moeserve
