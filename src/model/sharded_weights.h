// ShardedWeights: a rank's view of the checkpoint. Column-parallel shards (a
// block of a weight's rows: q/k/v heads, gate/up intermediate rows) are
// contiguous in a row-major weight, so they stay views into the source;
// row-parallel shards (a block of columns: o_proj, down) are not, so they are
// copied at load time into memory the model owns (`arena`).
#pragma once

#include <string>
#include <vector>

#include "loader/weight_source.h"
#include "model/parallel.h"

namespace moeserve {

class ShardedWeights {
 public:
  // arena: where copies live; it must outlive every view handed out (the model
  // owns it). A Tensor's memory is on the heap, so views stay valid when the
  // vector grows.
  ShardedWeights(const WeightSource& source, std::vector<Tensor>& arena) : source_(source), arena_(arena) {}

  const WeightSource& source() const { return source_; }
  Result<TensorView> require(const std::string& name, const Shape& shape) const { return source_.require(name, shape); }
  // Rows [begin, begin + count) of a weight of shape `full` (a view; 1-D
  // weights too).
  Result<TensorView> rows(const std::string& name, const Shape& full, int64_t begin, int64_t count) const;
  // Part `part` of dim 0 split into equal blocks (a view).
  Result<TensorView> row_block(const std::string& name, const Shape& full, const Partition& part) const;
  // Part `part` of dim 1 of a 2-D weight split into equal blocks (an owned
  // copy).
  Result<TensorView> col_block(const std::string& name, const Shape& full, const Partition& part) const;

 private:
  const WeightSource& source_;
  std::vector<Tensor>& arena_;
};

}  // namespace moeserve
