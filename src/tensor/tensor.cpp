#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace moeserve {

Shape::Shape(std::initializer_list<int64_t> dims) {
  MS_CHECK(dims.size() <= kMaxRank);
  for (int64_t dim : dims) dims_[rank_++] = dim;
}

Shape Shape::from_span(std::span<const int64_t> dims) {
  MS_CHECK(dims.size() <= kMaxRank);
  Shape shape;
  for (int64_t dim : dims) shape.dims_[shape.rank_++] = dim;
  return shape;
}

int64_t Shape::numel() const {
  int64_t count = 1;
  for (int axis = 0; axis < rank_; ++axis) count *= dims_[axis];
  return count;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int axis = 0; axis < rank_; ++axis) {
    if (dims_[axis] != other.dims_[axis]) return false;
  }
  return true;
}

std::string Shape::to_string() const { return fmt::format("[{}]", fmt::join(dims(), ", ")); }

TensorView TensorView::rows(int64_t begin, int64_t count) const {
  MS_CHECK(shape.rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[0]);
  TensorView view = *this;
  view.data = static_cast<char*>(data) + begin * row_size() * static_cast<int64_t>(dtype_size(dtype));
  std::array<int64_t, Shape::kMaxRank> dims{};
  for (int axis = 0; axis < shape.rank(); ++axis) dims[axis] = shape[axis];
  dims[0] = count;
  view.shape = Shape::from_span({dims.data(), static_cast<size_t>(shape.rank())});
  return view;
}

TensorView TensorView::reshaped(Shape new_shape) const {
  MS_CHECK(new_shape.numel() == numel());
  TensorView view = *this;
  view.shape = new_shape;
  return view;
}

void Tensor::FreeDeleter::operator()(void* ptr) const { std::free(ptr); }

Tensor::Tensor(DType dtype, Shape shape) {
  view_.dtype = dtype;
  resize(shape);
}

Tensor Tensor::uninitialized(DType dtype, Shape shape) {
  Tensor tensor;
  tensor.view_.dtype = dtype;
  tensor.allocate(shape, /*zero=*/false);
  return tensor;
}

void Tensor::resize(Shape shape) { allocate(shape, /*zero=*/true); }

void Tensor::allocate(Shape shape, bool zero) {
  const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(view_.dtype);
  if (bytes > capacity_bytes_ || !storage_) {
    const size_t rounded = (bytes + 63) / 64 * 64 + 64;
    void* memory = std::aligned_alloc(64, rounded);
    MS_CHECK_MSG(memory != nullptr, "out of host memory");
    if (zero) std::memset(memory, 0, rounded);
    storage_.reset(memory);
    capacity_bytes_ = rounded;
  }
  view_.data = storage_.get();
  view_.shape = shape;
}

}  // namespace moeserve
