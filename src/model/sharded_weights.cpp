#include "model/sharded_weights.h"

#include <cstring>

namespace moeserve {

Result<TensorView> ShardedWeights::whole(WeightRole role, int layer, int expert) const {
  const WeightEntry& entry = plan_.get(role, layer);
  return source_.require(entry.tensor_name(expert), entry.shape);
}

Result<TensorView> ShardedWeights::whole_if_present(WeightRole role, int layer) const {
  if (plan_.find(role, layer) == nullptr) return TensorView{};
  return whole(role, layer);
}

Result<TensorView> ShardedWeights::rows(WeightRole role, int layer, int64_t begin, int64_t count) const {
  MS_ASSIGN_OR_RETURN(TensorView view, whole(role, layer));
  return view.rows(begin, count);
}

Result<TensorView> ShardedWeights::shard(WeightRole role, int layer, const Partition& part, int expert) const {
  const WeightEntry& entry = plan_.get(role, layer);
  switch (entry.sharding) {
    case Sharding::kReplicated:
    case Sharding::kVocab: return whole(role, layer, expert);
    case Sharding::kColumn:
    case Sharding::kExpertColumn: {
      MS_CHECK(entry.rows() % part.size == 0);
      const int64_t block = entry.rows() / part.size;
      MS_ASSIGN_OR_RETURN(TensorView view, whole(role, layer, expert));
      return view.rows(part.rank * block, block);
    }
    case Sharding::kRow:
    case Sharding::kExpertRow: return col_block(entry, part, expert);
    case Sharding::kKvHeads: break;
  }
  MS_CHECK_MSG(false, "kKvHeads tensors are loaded with rows()");
  return TensorView{};
}

Result<TensorView> ShardedWeights::col_block(const WeightEntry& entry, const Partition& part, int expert) const {
  MS_ASSIGN_OR_RETURN(TensorView view, source_.require(entry.tensor_name(expert), entry.shape));
  if (part.size == 1) return view;
  MS_CHECK(entry.shape.rank() == 2 && entry.cols() % part.size == 0);
  const int64_t rows = entry.rows(), cols = entry.cols() / part.size;
  const size_t elem = dtype_size(view.dtype);
  Tensor copy(view.dtype, Shape{rows, cols});
  for (int64_t row = 0; row < rows; ++row) {
    std::memcpy(static_cast<char*>(copy.view().data) + row * cols * elem,
                static_cast<const char*>(view.data) + (row * entry.cols() + part.rank * cols) * elem, cols * elem);
  }
  arena_.push_back(std::move(copy));
  return arena_.back().view();
}

}  // namespace moeserve
