#include "model/sharded_weights.h"

#include <cmath>
#include <cstring>

#include "base/dtype.h"
#include "kernels/ops.h"

namespace moeserve {

Result<TensorView> ShardedWeights::whole(WeightRole role, int layer, int expert) const {
  const WeightEntry& entry = plan_.get(role, layer);
  if (entry.fused()) return fused_slice(entry, expert);
  return source_.require(entry.tensor_name(expert), entry.shape);
}

namespace {

constexpr int64_t kMxBlock = 32;  // values per e8m0 scale

}  // namespace

Result<bool> ShardedWeights::has_mxfp4(const WeightEntry& entry) const {
  if (!entry.fused() || entry.shape.rank() != 2 || entry.cols() % kMxBlock != 0) return false;
  MS_ASSIGN_OR_RETURN(TensorView blocks,
                      source_.optional_bytes(entry.tensor_name(0) + "_blocks",
                                             Shape{entry.count, entry.fused_cols, entry.cols() / kMxBlock, 16}));
  return blocks.data != nullptr;
}

Result<ShardedWeights::Mxfp4Rows> ShardedWeights::mxfp4_rows(const WeightEntry& entry, int expert) const {
  // blocks [E, fused_cols, in/32, 16] u8, scales [E, fused_cols, in/32] e8m0 (2^(s - 127)); the
  // slice's row o is the stored row offset + o · stride.
  MS_CHECK(expert >= 0 && expert < entry.count && entry.fused() && entry.shape.rank() == 2);
  const std::string name = entry.tensor_name(expert);
  const int64_t out = entry.rows(), in = entry.cols(), cols = entry.fused_cols, groups = in / kMxBlock;
  MS_ASSIGN_OR_RETURN(TensorView blocks,
                      source_.optional_bytes(name + "_blocks", Shape{entry.count, cols, groups, 16}));
  if (blocks.data == nullptr) return make_error("tensor '{}_blocks' (MXFP4) is missing", name);
  MS_ASSIGN_OR_RETURN(TensorView scales, source_.optional_bytes(name + "_scales", Shape{entry.count, cols, groups}));
  if (scales.data == nullptr) return make_error("tensor '{}_blocks' has no '{}_scales' beside it", name, name);
  const auto* packed = static_cast<const uint8_t*>(blocks.data) + static_cast<int64_t>(expert) * cols * groups * 16;
  const auto* exponents = static_cast<const uint8_t*>(scales.data) + static_cast<int64_t>(expert) * cols * groups;
  Mxfp4Rows rows{.blocks = std::vector<uint8_t>(static_cast<size_t>(out * in / 2)),
                 .scales = std::vector<uint8_t>(static_cast<size_t>(out * groups))};
  for (int64_t o = 0; o < out; ++o) {
    const int64_t row = entry.fused_offset + o * entry.fused_stride;
    for (int64_t g = 0; g < groups; ++g) {
      if (exponents[row * groups + g] == 0xFF) {
        return make_error("tensor '{}_scales': expert {} row {} group {} is NaN (0xFF)", name, expert, row, g);
      }
    }
    std::memcpy(rows.blocks.data() + o * in / 2, packed + row * in / 2, static_cast<size_t>(in / 2));
    std::memcpy(rows.scales.data() + o * groups, exponents + row * groups, static_cast<size_t>(groups));
  }
  return rows;
}

Result<TensorView> ShardedWeights::mxfp4_slice(const WeightEntry& entry, int expert) const {
  // Every MXFP4 value is a bf16 (a 2-bit significand, scales within bf16's exponent range), so the
  // dequantization is exact.
  MS_ASSIGN_OR_RETURN(const Mxfp4Rows rows, mxfp4_rows(entry, expert));
  Tensor copy(DType::kBF16, Shape{entry.rows(), entry.cols()});
  ops::dequantize_mxfp4(rows.blocks.data(), rows.scales.data(), entry.rows(), entry.cols(),
                        static_cast<uint16_t*>(copy.view().data));
  arena_.push_back(std::move(copy));
  return arena_.back().view();
}

Result<TensorView> ShardedWeights::fused_slice(const WeightEntry& entry, int expert) const {
  MS_CHECK(expert >= 0 && expert < entry.count);
  MS_ASSIGN_OR_RETURN(const bool mxfp4, has_mxfp4(entry));
  if (mxfp4) return mxfp4_slice(entry, expert);  // MXFP4 as published (GPT-OSS)
  // stored [E, in, fused_cols]; the slice [out, in]: slice[o, i] = stored[expert, i, offset + o * stride]
  // (a vector entry: stored [E, fused_cols], in = 1).
  MS_ASSIGN_OR_RETURN(TensorView stored, source_.require(entry.tensor_name(expert), entry.stored_shape()));
  const int64_t out = entry.rows(), in = entry.cols(), cols = entry.fused_cols;
  const size_t elem = dtype_size(stored.dtype);
  Tensor copy(stored.dtype, entry.shape.rank() == 2 ? Shape{out, in} : Shape{out});  // a fused bias: [out]
  const char* src = static_cast<const char*>(stored.data) + static_cast<int64_t>(expert) * in * cols * elem;
  char* dst = static_cast<char*>(copy.view().data);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t col = entry.fused_offset + o * entry.fused_stride;
    for (int64_t i = 0; i < in; ++i) std::memcpy(dst + (o * in + i) * elem, src + (i * cols + col) * elem, elem);
  }
  arena_.push_back(std::move(copy));
  return arena_.back().view();
}

Result<TensorView> ShardedWeights::whole_if_present(WeightRole role, int layer) const {
  if (plan_.find(role, layer) == nullptr) return TensorView{};
  return whole(role, layer);
}

Result<TensorView> ShardedWeights::rows(WeightRole role, int layer, int64_t begin, int64_t count,
                                        ShardRegion* region) const {
  MS_ASSIGN_OR_RETURN(TensorView view, whole(role, layer));
  if (region != nullptr) *region = ShardRegion{begin, count, 0, view.shape.rank() == 2 ? view.dim(1) : 0};
  return view.rows(begin, count);
}

Result<TensorView> ShardedWeights::scale_inv(WeightRole role, int layer, int expert,
                                             const std::array<int, 2>& block) const {
  const WeightEntry& entry = plan_.get(role, layer);
  MS_CHECK(entry.shape.rank() == 2 && block[0] > 0 && block[1] > 0);
  if (entry.fused()) {
    return make_error("tensor '{}': fp8 scales of a fused expert tensor are not supported", entry.tensor_name(expert));
  }
  const Shape grid{(entry.rows() + block[0] - 1) / block[0], (entry.cols() + block[1] - 1) / block[1]};
  return source_.require(entry.tensor_name(expert) + "_scale_inv", grid);
}

Result<TensorView> ShardedWeights::shard(WeightRole role, int layer, const Partition& part, int expert,
                                         ShardRegion* region) const {
  const WeightEntry& entry = plan_.get(role, layer);
  const int64_t rows = entry.rows();
  const int64_t cols = entry.shape.rank() == 2 ? entry.cols() : 0;
  ShardRegion where{0, rows, 0, cols};
  Result<TensorView> view = TensorView{};
  switch (entry.sharding) {
    case Sharding::kReplicated:
    case Sharding::kVocab:
      view = whole(role, layer, expert);
      break;
    case Sharding::kColumn:
    case Sharding::kExpertColumn: {
      MS_CHECK(rows % part.size == 0);
      where.rows = rows / part.size;
      where.row0 = part.rank * where.rows;
      MS_ASSIGN_OR_RETURN(TensorView whole_view, whole(role, layer, expert));
      view = whole_view.rows(where.row0, where.rows);
      break;
    }
    case Sharding::kRow:
    case Sharding::kExpertRow:
      if (part.size > 1) {
        where.cols = cols / part.size;
        where.col0 = part.rank * where.cols;
      }
      view = col_block(entry, part, expert);
      break;
    case Sharding::kKvHeads:
      MS_CHECK_MSG(false, "kKvHeads tensors are loaded with rows()");
  }
  if (region != nullptr) *region = where;
  return view;
}

Result<TensorView> ShardedWeights::col_block(const WeightEntry& entry, const Partition& part, int expert) const {
  MS_ASSIGN_OR_RETURN(TensorView view, whole(entry.role, entry.layer, expert));
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
