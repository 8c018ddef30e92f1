// CPU reference: the MoE dispatch/combine primitives — the dispatch plan (which permuted row each
// (token, k) entry goes to, experts' rows contiguous, each expert's entries in token order), the
// row gather that applies it, and the weighted add of the experts' outputs back into their rows.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

void moe_permute(ExecContext& ctx, const MoePermuteArgs& args) {
  std::vector<int32_t> counts(args.experts, 0);
  for (int i = 0; i < args.entries; ++i) ++counts[args.expert_ids[i]];
  args.offsets[0] = 0;
  for (int e = 0; e < args.experts; ++e) args.offsets[e + 1] = args.offsets[e] + counts[e];
  if (args.load_counts != nullptr) {
    for (int e = 0; e < args.experts; ++e) args.load_counts[e] += counts[e];
  }
  std::vector<int32_t> next(args.offsets, args.offsets + args.experts);  // a stable counting sort
  for (int i = 0; i < args.entries; ++i) {
    const int32_t row = next[args.expert_ids[i]]++;
    args.positions[i] = row;
    args.source_rows[row] = i / args.top_k;
  }
}

void gather_rows(ExecContext& ctx, const TensorView& x, std::span<const int32_t> rows, const TensorView& out) {
  const int64_t width = x.dim(1);
  MS_CHECK(out.dim(0) == static_cast<int64_t>(rows.size()) && out.dim(1) == width);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.as<float>() + i * width, x.as<float>() + rows[i] * width, width * sizeof(float));
  }
}

void gather_rows(ExecContext& ctx, const float* x, int width, const int32_t* rows, int count, float* out_f32,
                 uint16_t* out_bf16) {
  std::vector<float> gathered(static_cast<size_t>(count) * width);
  int64_t x_rows = 0;
  for (int i = 0; i < count; ++i) x_rows = std::max<int64_t>(x_rows, rows[i] + 1);
  const TensorView all{const_cast<float*>(x), DType::kF32, Shape{x_rows, width}};
  gather_rows(ctx, all, std::span<const int32_t>(rows, count),
              TensorView{gathered.data(), DType::kF32, Shape{count, width}});
  if (out_f32 != nullptr) std::memcpy(out_f32, gathered.data(), gathered.size() * sizeof(float));
  if (out_bf16 != nullptr) {
    for (size_t i = 0; i < gathered.size(); ++i) out_bf16[i] = f32_to_bf16(gathered[i]);
  }
}

void scatter_add_rows(ExecContext& ctx, const TensorView& y, std::span<const int32_t> rows,
                      std::span<const float> weights, const TensorView& out) {
  const int64_t width = y.dim(1);
  MS_CHECK(y.dim(0) == static_cast<int64_t>(rows.size()) && out.dim(1) == width);
  for (size_t i = 0; i < rows.size(); ++i) {
    float* dst = out.as<float>() + rows[i] * width;
    const float* src = y.as<float>() + i * width;
    for (int64_t d = 0; d < width; ++d) dst[d] += weights[i] * src[d];
  }
}

}  // namespace moeserve::ops
