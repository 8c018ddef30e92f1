// CPU reference: causal attention over contiguous q/k/v (MLA's naive, up-projected form).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

void attention_dense(ExecContext& ctx, const TensorView& q, const TensorView& k, const TensorView& v, float scale,
                     const TensorView& out) {
  const int64_t num_queries = q.dim(0);
  const int64_t num_keys = k.dim(0);
  const int64_t heads = q.dim(1);
  const int64_t qk_dim = q.dim(2);
  const int64_t v_dim = v.dim(2);
  MS_CHECK(k.dim(1) == heads && k.dim(2) == qk_dim && v.dim(0) == num_keys && num_queries <= num_keys);
  ctx.pool->parallel_for(num_queries * heads, 4, [&](size_t begin, size_t end) {
    std::vector<float> scores;
    for (size_t item = begin; item < end; ++item) {
      const int64_t query = static_cast<int64_t>(item) / heads;
      const int64_t head = static_cast<int64_t>(item) % heads;
      const int64_t visible = num_keys - num_queries + query + 1;
      const float* qv = q.as<float>() + (query * heads + head) * qk_dim;
      scores.resize(visible);
      float max_score = -INFINITY;
      for (int64_t key = 0; key < visible; ++key) {
        const float* kv = k.as<float>() + (key * heads + head) * qk_dim;
        float dot = 0.0f;
        for (int64_t d = 0; d < qk_dim; ++d) dot += qv[d] * kv[d];
        scores[key] = dot * scale;
        max_score = std::max(max_score, scores[key]);
      }
      float denominator = 0.0f;
      for (int64_t key = 0; key < visible; ++key) denominator += scores[key] = std::exp(scores[key] - max_score);
      float* dst = out.as<float>() + (query * heads + head) * v_dim;
      std::fill(dst, dst + v_dim, 0.0f);
      for (int64_t key = 0; key < visible; ++key) {
        const float* value = v.as<float>() + (key * heads + head) * v_dim;
        const float p = scores[key] / denominator;
        for (int64_t d = 0; d < v_dim; ++d) dst[d] += p * value[d];
      }
    }
  });
}

}  // namespace moeserve::ops
