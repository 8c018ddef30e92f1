// How the CPU step ops read and write the elements of a paged KV cache: float32, or e4m3 bytes
// (the ops' cache_fp8, --kv-cache-dtype fp8). A write divides each value by its KvScales scale and
// rounds it to the nearest e4m3 (f32_to_f8e4m3: ties to even, saturating at ±448); a read decodes
// exactly (f8e4m3_to_f32, through a table of the 256 codes). So an op over an e4m3 cache computes
// on exactly the floats a float32 cache of the rounded values would hold.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "base/dtype.h"
#include "kernels/ops.h"

namespace moeserve::ops {

// The cache slot of token position `position` of a sequence whose blocks are block_table [blocks].
inline int64_t paged_slot(const int32_t* block_table, int block_size, int position) {
  return int64_t{block_table[position / block_size]} * block_size + position % block_size;
}

// f8e4m3_to_f32 of every code: [256] float32.
const std::array<float, 256>& f8e4m3_values();

// Elements [offset, offset + count) of cache slot `slot` (entry_size elements per slot) as
// float32: a pointer into a float32 cache, or (fp8) the bytes decoded into scratch [count].
inline const float* read_kv(const float* cache, bool fp8, int64_t slot, int entry_size, int offset, int count,
                            float* scratch) {
  if (!fp8) return cache + slot * entry_size + offset;
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(cache) + slot * entry_size + offset;
  const float* values = f8e4m3_values().data();
  for (int i = 0; i < count; ++i) scratch[i] = values[bytes[i]];
  return scratch;
}

// Cache slot `slot` ← src [entry_size] float32 (fp8: each value divided by its scale, elements
// from value_begin on by scales.v and those before by scales.k, and rounded to e4m3).
inline void write_kv(float* cache, bool fp8, int64_t slot, int entry_size, const float* src,
                     const KvScales& scales = {}, int value_begin = 0) {
  if (!fp8) {
    std::memcpy(cache + slot * entry_size, src, entry_size * sizeof(float));
    return;
  }
  uint8_t* bytes = reinterpret_cast<uint8_t*>(cache) + slot * entry_size;
  for (int i = 0; i < entry_size; ++i) bytes[i] = f32_to_f8e4m3(src[i] / (i < value_begin ? scales.k : scales.v));
}

}  // namespace moeserve::ops
