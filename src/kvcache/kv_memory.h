// KvMemory: the KV cache's storage — per layer, num_blocks blocks of block_size token entries
// of entry_size elements, float32 or e4m3 bytes (see kernels/paged_kv.h for what an entry holds).
// Which blocks belong to which sequence is decided elsewhere (block tables); this only owns the
// memory.
#pragma once

#include <vector>

#include "kernels/paged_kv.h"
#include "tensor/tensor.h"

namespace moeserve {

struct KvShape {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int entry_size = 0;  // elements per token per layer
  // kF32, or kF8E4M3 (--kv-cache-dtype fp8: one byte per element, the ops' cache_fp8).
  DType element = DType::kF32;
};

class KvMemory {
 public:
  explicit KvMemory(const KvShape& shape);
  const KvShape& shape() const { return shape_; }
  // A float32 cache's layer as the tensor ops' view.
  PagedKvLayer layer(int layer_idx) const;
  // The layer's [num_blocks × block_size, entry_size] elements of either type.
  void* layer_data(int layer_idx) const;
  size_t bytes() const;

 private:
  KvShape shape_;
  std::vector<Tensor> layers_;
};

}  // namespace moeserve
