// CPU reference: scatter this batch's new K/V (or MLA latent + rope key) into the paged cache
// (the step form: float32 entries, or e4m3 bytes, kernels/cpu/kv_elements.h).
#include <cstring>

#include "kernels/cpu/kv_elements.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void kv_write(ExecContext& ctx, const PagedKvLayer& kv, std::span<const SequenceView> sequences,
              const TensorView& first, const TensorView& second) {
  const int64_t first_size = first.row_size();
  const int64_t second_size = second.row_size();
  MS_CHECK(first_size + second_size == kv.entry_size);
  for (const SequenceView& seq : sequences) {
    const int first_position = seq.context_len - seq.num_query;
    for (int i = 0; i < seq.num_query; ++i) {
      const int64_t row = seq.query_begin + i;
      float* entry = kv.entry(seq.block_table.data(), first_position + i);
      std::memcpy(entry, first.as<float>() + row * first_size, first_size * sizeof(float));
      std::memcpy(entry + first_size, second.as<float>() + row * second_size, second_size * sizeof(float));
    }
  }
}

}  // namespace moeserve::ops

namespace moeserve::ops {

void kv_gather(ExecContext& ctx, const PagedKvLayer& kv, std::span<const int32_t> block_table, int context_len,
               const TensorView& out) {
  MS_CHECK(out.dim(0) == context_len && out.dim(1) == kv.entry_size);
  for (int position = 0; position < context_len; ++position) {
    std::memcpy(out.as<float>() + static_cast<int64_t>(position) * kv.entry_size,
                kv.entry(block_table.data(), position), kv.entry_size * sizeof(float));
  }
}

}  // namespace moeserve::ops

namespace moeserve::ops {

const std::array<float, 256>& f8e4m3_values() {
  static const std::array<float, 256> values = [] {
    std::array<float, 256> table{};
    for (int code = 0; code < 256; ++code) table[code] = f8e4m3_to_f32(static_cast<uint8_t>(code));
    return table;
  }();
  return values;
}

void kv_write(ExecContext& ctx, float* cache, int entry_size, const int32_t* slots, int tokens, const float* src,
              int64_t src_stride, bool cache_fp8, const KvScales& scales, int value_begin) {
  for (int t = 0; t < tokens; ++t) {
    write_kv(cache, cache_fp8, slots[t], entry_size, src + t * src_stride, scales, value_begin);
  }
}

}  // namespace moeserve::ops
