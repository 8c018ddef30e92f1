// CPU reference: token embedding lookup (converting the table's dtype to float32); the step form
// from a bf16 or float32 table.
#include <algorithm>

#include "kernels/ops.h"

namespace moeserve::ops {

void embedding(ExecContext& ctx, const TensorView& table, std::span<const int32_t> ids, const TensorView& out) {
  const int64_t hidden = table.dim(1);
  MS_CHECK(out.dim(0) == static_cast<int64_t>(ids.size()) && out.dim(1) == hidden);
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(table.dtype);
  ctx.pool->parallel_for(ids.size(), 16, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      MS_CHECK(ids[t] >= 0 && ids[t] < table.dim(0));
      const char* row = static_cast<const char*>(table.data) + static_cast<size_t>(ids[t]) * row_bytes;
      convert_to_f32(table.dtype, row, out.as<float>() + t * hidden, hidden);
    }
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

namespace {
void embedding_step(ExecContext& ctx, const void* table, DType dtype, int hidden, const int32_t* ids, int tokens,
                    float* out) {
  int64_t vocab = 0;  // the rows the ids reach (the caller checked them against the vocabulary)
  for (int t = 0; t < tokens; ++t) vocab = std::max<int64_t>(vocab, ids[t] + 1);
  embedding(ctx, TensorView{const_cast<void*>(table), dtype, Shape{vocab, hidden}},
            std::span<const int32_t>(ids, tokens), TensorView{out, DType::kF32, Shape{tokens, hidden}});
}
}  // namespace

void embedding(ExecContext& ctx, const uint16_t* table, int hidden, const int32_t* ids, int tokens, float* out) {
  embedding_step(ctx, table, DType::kBF16, hidden, ids, tokens, out);
}
void embedding(ExecContext& ctx, const float* table, int hidden, const int32_t* ids, int tokens, float* out) {
  embedding_step(ctx, table, DType::kF32, hidden, ids, tokens, out);
}

}  // namespace moeserve::ops
