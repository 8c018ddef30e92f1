#include "model/sharded_weights.h"

#include <cstring>

namespace moeserve {

Result<TensorView> ShardedWeights::rows(const std::string& name, const Shape& full, int64_t begin,
                                        int64_t count) const {
  MS_ASSIGN_OR_RETURN(TensorView view, source_.require(name, full));
  return view.rows(begin, count);
}

Result<TensorView> ShardedWeights::row_block(const std::string& name, const Shape& full, const Partition& part) const {
  MS_CHECK(full[0] % part.size == 0);
  const int64_t block = full[0] / part.size;
  return rows(name, full, part.rank * block, block);
}

Result<TensorView> ShardedWeights::col_block(const std::string& name, const Shape& full, const Partition& part) const {
  MS_ASSIGN_OR_RETURN(TensorView view, source_.require(name, full));
  if (part.size == 1) return view;
  MS_CHECK(full.rank() == 2 && full[1] % part.size == 0);
  const int64_t rows = full[0], cols = full[1] / part.size;
  const size_t elem = dtype_size(view.dtype);
  Tensor copy(view.dtype, Shape{rows, cols});
  for (int64_t row = 0; row < rows; ++row) {
    std::memcpy(static_cast<char*>(copy.view().data) + row * cols * elem,
                static_cast<const char*>(view.data) + (row * full[1] + part.rank * cols) * elem, cols * elem);
  }
  arena_.push_back(std::move(copy));
  return arena_.back().view();
}

}  // namespace moeserve
