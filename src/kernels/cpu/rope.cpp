// CPU reference: rotary position embedding, applied in place to the first rotary_dim dims of
// every head. cos/sin are computed in float32 from float32 inv_freq × position, as HF does. The
// step form rotates strided heads of a wider row and writes the cache entry after.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

void rope(ExecContext& ctx, const TensorView& x, std::span<const int32_t> positions, const RopeParams& params) {
  const int64_t tokens = x.dim(0);
  const int64_t heads = x.dim(1);
  const int64_t head_stride = x.dim(2);
  const int64_t half = static_cast<int64_t>(params.inv_freq.size());
  MS_CHECK(static_cast<int64_t>(positions.size()) == tokens && params.rotary_offset + 2 * half <= head_stride);
  ctx.pool->parallel_for(tokens, 8, [&](size_t begin, size_t end) {
    std::vector<float> cos_values(half), sin_values(half);
    for (size_t t = begin; t < end; ++t) {
      const float position = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * params.inv_freq[i];
        cos_values[i] = std::cos(angle) * params.attention_factor;
        sin_values[i] = std::sin(angle) * params.attention_factor;
      }
      for (int64_t head = 0; head < heads; ++head) {
        float* v = x.as<float>() + (t * heads + head) * head_stride + params.rotary_offset;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = params.interleaved ? 2 * i : i;
          const int64_t b = params.interleaved ? 2 * i + 1 : i + half;
          const float x0 = v[a];
          const float x1 = v[b];
          v[a] = x0 * cos_values[i] - x1 * sin_values[i];
          v[b] = x1 * cos_values[i] + x0 * sin_values[i];
        }
      }
    }
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

// The step form: the tokens' heads (inside rows token_stride long) gathered into one dense
// [T, heads, head_stride] tensor, the tensor op over all of them, written back; then the cache
// write of each token's entry (float32, or rounded to e4m3 bytes when cache_fp8).
void rope(ExecContext& ctx, const RopeArgs& args) {
  const RopeParams params{.inv_freq = std::span<const float>(args.inv_freq, args.half),
                          .rotary_offset = args.rotary_offset,
                          .attention_factor = args.attention_factor,
                          .interleaved = args.interleaved};
  const int64_t width = static_cast<int64_t>(args.heads) * args.head_stride;
  std::vector<float> dense(static_cast<size_t>(args.tokens) * width);
  for (int t = 0; t < args.tokens; ++t) {
    const float* row = args.x + t * args.token_stride;
    std::copy(row, row + width, dense.begin() + t * width);
  }
  rope(ctx, TensorView{dense.data(), DType::kF32, Shape{args.tokens, args.heads, args.head_stride}},
       std::span<const int32_t>(args.positions, args.tokens), params);
  for (int t = 0; t < args.tokens; ++t) {
    std::copy(dense.begin() + t * width, dense.begin() + (t + 1) * width, args.x + t * args.token_stride);
  }
  if (args.cache != nullptr) {
    kv_write(ctx, args.cache, args.entry_size, args.slots, args.tokens, args.x + args.entry_offset, args.token_stride,
             args.cache_fp8, args.cache_scales, args.cache_value_begin);
  }
}

}  // namespace moeserve::ops
