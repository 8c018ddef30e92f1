// KvMemory: the KV cache's storage — per layer, num_blocks blocks of block_size token entries
// of entry_size floats (see kernels/paged_kv.h for what an entry holds). Which blocks belong
// to which sequence is decided elsewhere (block tables); this only owns the memory.
#pragma once

#include <vector>

#include "kernels/paged_kv.h"
#include "tensor/tensor.h"

namespace moeserve {

struct KvShape {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int entry_size = 0;  // floats per token per layer
};

class KvMemory {
 public:
  explicit KvMemory(const KvShape& shape);
  const KvShape& shape() const { return shape_; }
  PagedKvLayer layer(int layer_idx) const;
  size_t bytes() const;

 private:
  KvShape shape_;
  std::vector<Tensor> layers_;
};

}  // namespace moeserve
