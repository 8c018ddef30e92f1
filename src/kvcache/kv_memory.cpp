#include "kvcache/kv_memory.h"

namespace moeserve {

KvMemory::KvMemory(const KvShape& shape) : shape_(shape) {
  MS_CHECK(shape.num_layers > 0 && shape.num_blocks > 0 && shape.block_size > 0 && shape.entry_size > 0);
  MS_CHECK(shape.element == DType::kF32 || shape.element == DType::kF8E4M3);
  layers_.reserve(shape.num_layers);
  for (int layer = 0; layer < shape.num_layers; ++layer) {
    layers_.emplace_back(shape.element, Shape{shape.num_blocks, shape.block_size, shape.entry_size});
  }
}

PagedKvLayer KvMemory::layer(int layer_idx) const {
  MS_CHECK(layer_idx >= 0 && layer_idx < shape_.num_layers);
  return PagedKvLayer{layers_[layer_idx].f32(), shape_.num_blocks, shape_.block_size, shape_.entry_size};
}

void* KvMemory::layer_data(int layer_idx) const {
  MS_CHECK(layer_idx >= 0 && layer_idx < shape_.num_layers);
  return layers_[layer_idx].view().data;
}

size_t KvMemory::bytes() const {
  return static_cast<size_t>(shape_.num_layers) * shape_.num_blocks * shape_.block_size * shape_.entry_size *
         dtype_size(shape_.element);
}

}  // namespace moeserve
