// ShardedWeights: a rank's view of the checkpoint, read through the weight plan
// (model/weight_plan.h). Column-parallel shards (a block of a weight's rows: q/k/v heads,
// gate/up intermediate rows) are contiguous in a row-major weight, so they stay views into the
// source; row-parallel shards (a block of columns: o_proj, down) are not, so they are copied at
// load time into memory the model owns (`arena`), as is each expert's slice of a fused expert
// tensor (stored [E, in, fused_cols], transposed to a Linear weight's [out, in]).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "loader/weight_source.h"
#include "model/parallel.h"
#include "model/weight_plan.h"

namespace moeserve {

// Where a rank's part lies in the whole tensor: rows [row0, row0 + rows), columns [col0, col0 +
// cols) (a 1-D tensor: rows only).
struct ShardRegion {
  int64_t row0 = 0;
  int64_t rows = 0;
  int64_t col0 = 0;
  int64_t cols = 0;
};

class ShardedWeights {
 public:
  // arena: where copies live; it must outlive every view handed out (the model owns it). A
  // Tensor's memory is on the heap, so views stay valid when the vector grows.
  ShardedWeights(const WeightSource& source, const WeightPlan& plan, std::vector<Tensor>& arena)
      : source_(source), plan_(plan), arena_(arena) {}

  const WeightPlan& plan() const { return plan_; }
  const WeightSource& source() const { return source_; }
  // The whole tensor of `role` in `layer` (tensor `expert` of routed experts).
  Result<TensorView> whole(WeightRole role, int layer, int expert = 0) const;
  // As `whole`, or a null view when this config has no such tensor.
  Result<TensorView> whole_if_present(WeightRole role, int layer) const;
  // This rank's part of the tensor by the entry's sharding over `part`: kColumn and
  // kExpertColumn a block of rows (a view), kRow and kExpertRow a block of columns (a copy),
  // kReplicated and kVocab the whole tensor (the embedding and LM head are replicated today).
  // kKvHeads tensors are taken with `rows` (the replication rule needs the head count).
  // region (when given): where the part lies in the whole tensor.
  Result<TensorView> shard(WeightRole role, int layer, const Partition& part, int expert = 0,
                           ShardRegion* region = nullptr) const;
  // Rows [begin, begin + count) of the tensor (a view; 1-D tensors too).
  Result<TensorView> rows(WeightRole role, int layer, int64_t begin, int64_t count,
                          ShardRegion* region = nullptr) const;
  // The load-time copies made so far, and dropping those made after `mark` once their views are
  // packed (a fused expert tensor's slices would otherwise hold a second copy of every expert
  // until the load ends). The arena is the caller's, hence const.
  size_t copies_mark() const { return arena_.size(); }
  void release_copies(size_t mark) const {
    arena_.erase(arena_.begin() + static_cast<std::ptrdiff_t>(mark), arena_.end());
  }
  // Whether a fused expert entry is stored as MXFP4 (`<name>_blocks` / `<name>_scales`, GPT-OSS
  // as published) in the checkpoint.
  Result<bool> has_mxfp4(const WeightEntry& entry) const;
  // Expert `expert`'s slice of an MXFP4 entry, whole, as stored: blocks [out, in / 2] and scales
  // [out, in / 32] (Projection::mxfp4's layout); an error for a NaN (0xFF) scale.
  struct Mxfp4Rows {
    std::vector<uint8_t> blocks;
    std::vector<uint8_t> scales;
  };
  Result<Mxfp4Rows> mxfp4_rows(const WeightEntry& entry, int expert) const;
  // The fp8 block scales of the whole tensor (`<name>_scale_inv`, float32 [ceil(rows / block[0]),
  // ceil(cols / block[1])]) that an F8_E4M3 checkpoint tensor comes with.
  Result<TensorView> scale_inv(WeightRole role, int layer, int expert, const std::array<int, 2>& block) const;

 private:
  Result<TensorView> col_block(const WeightEntry& entry, const Partition& part, int expert) const;
  // Expert `expert`'s [out, in] matrix of a fused expert tensor (WeightEntry::fused_cols): its
  // columns transposed out of the stored [E, in, fused_cols] (a copy).
  // Or, where the checkpoint has `<name>_blocks` / `<name>_scales` instead (MXFP4, GPT-OSS as
  // published), the same slice dequantized exactly to bf16 (mxfp4_slice).
  Result<TensorView> fused_slice(const WeightEntry& entry, int expert) const;
  Result<TensorView> mxfp4_slice(const WeightEntry& entry, int expert) const;

  const WeightSource& source_;
  const WeightPlan& plan_;
  std::vector<Tensor>& arena_;
};

}  // namespace moeserve
