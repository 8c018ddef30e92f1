// CPU reference: MoE routing for every variant in one place —
//   softmax → top-k (→ renormalise)            Mixtral, Qwen2/3-MoE, DeepSeek-V2 greedy
//   softmax → group-limited (group max) top-k  DeepSeek-V2 group_limited_greedy
//   sigmoid (+ bias for selection only) → group-limited (sum of top-2) top-k → weights from
//   the unbiased scores → renormalise          DeepSeek-V3 / Kimi K2 noaux_tc
//   top-k over the logits → softmax over the k selected logits       GPT-OSS
// then × routed_scaling_factor. Experts of dropped groups are excluded (−inf), as DeepSeek's
// reference and vLLM do. Ties pick the lower expert index.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

namespace {

// Indices of the k largest values (descending; lower index first on ties).
std::vector<int> top_k_indices(const std::vector<float>& values, int k) {
  std::vector<int> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return values[a] > values[b] || (values[a] == values[b] && a < b); });
  order.resize(k);
  return order;
}

void mask_to_best_groups(std::vector<float>& selection, const RouterParams& params) {
  const int num_experts = static_cast<int>(selection.size());
  const int group_size = num_experts / params.num_groups;
  std::vector<float> group_scores(params.num_groups);
  for (int group = 0; group < params.num_groups; ++group) {
    std::vector<float> members(selection.begin() + group * group_size, selection.begin() + (group + 1) * group_size);
    if (params.group_score_top2_sum) {
      const std::vector<int> best = top_k_indices(members, std::min(2, group_size));
      group_scores[group] = 0.0f;
      for (int idx : best) group_scores[group] += members[idx];
    } else {
      group_scores[group] = *std::max_element(members.begin(), members.end());
    }
  }
  const std::vector<int> kept = top_k_indices(group_scores, params.topk_groups);
  std::vector<bool> keep(params.num_groups, false);
  for (int group : kept) keep[group] = true;
  for (int expert = 0; expert < num_experts; ++expert) {
    if (!keep[expert / group_size]) selection[expert] = -INFINITY;
  }
}

}  // namespace

void route(ExecContext& ctx, const TensorView& logits, const TensorView& selection_bias, const RouterParams& params,
           const TensorView& expert_ids, const TensorView& expert_weights) {
  const int64_t tokens = logits.dim(0);
  const int num_experts = static_cast<int>(logits.dim(1));
  std::vector<float> bias(num_experts, 0.0f);
  if (selection_bias.data != nullptr) convert_to_f32(selection_bias.dtype, selection_bias.data, bias.data(), num_experts);
  ctx.pool->parallel_for(tokens, 16, [&](size_t begin, size_t end) {
    std::vector<float> scores(num_experts), selection(num_experts);
    for (size_t t = begin; t < end; ++t) {
      const float* row = logits.as<float>() + t * num_experts;
      if (params.softmax_after_topk) {
        for (int e = 0; e < num_experts; ++e) selection[e] = row[e] + bias[e];
        const std::vector<int> chosen = top_k_indices(selection, params.top_k);
        float max_logit = -INFINITY;
        for (int expert : chosen) max_logit = std::max(max_logit, row[expert]);
        float sum = 0.0f;
        for (int k = 0; k < params.top_k; ++k) sum += scores[k] = std::exp(row[chosen[k]] - max_logit);
        for (int k = 0; k < params.top_k; ++k) {
          expert_ids.as<int32_t>()[t * params.top_k + k] = chosen[k];
          expert_weights.as<float>()[t * params.top_k + k] = scores[k] / sum * params.scaling_factor;
        }
        continue;
      }
      if (params.sigmoid) {
        for (int e = 0; e < num_experts; ++e) scores[e] = 1.0f / (1.0f + std::exp(-row[e]));
      } else {
        const float max_logit = *std::max_element(row, row + num_experts);
        float sum = 0.0f;
        for (int e = 0; e < num_experts; ++e) sum += scores[e] = std::exp(row[e] - max_logit);
        for (int e = 0; e < num_experts; ++e) scores[e] /= sum;
      }
      for (int e = 0; e < num_experts; ++e) selection[e] = scores[e] + bias[e];
      if (params.num_groups > 1) mask_to_best_groups(selection, params);
      const std::vector<int> chosen = top_k_indices(selection, params.top_k);
      float weight_sum = 0.0f;
      for (int expert : chosen) weight_sum += scores[expert];
      const float norm = params.renormalize ? 1.0f / (weight_sum + 1e-20f) : 1.0f;
      for (int k = 0; k < params.top_k; ++k) {
        expert_ids.as<int32_t>()[t * params.top_k + k] = chosen[k];
        expert_weights.as<float>()[t * params.top_k + k] = scores[chosen[k]] * norm * params.scaling_factor;
      }
    }
  });
}

}  // namespace moeserve::ops

namespace moeserve::ops {

void route(ExecContext& ctx, const float* logits, const float* selection_bias, int tokens, int experts,
           const RouterParams& params, int32_t* expert_ids, float* expert_weights) {
  route(ctx, TensorView{const_cast<float*>(logits), DType::kF32, Shape{tokens, experts}},
        TensorView{const_cast<float*>(selection_bias), DType::kF32, Shape{experts}}, params,
        TensorView{expert_ids, DType::kI32, Shape{tokens, params.top_k}},
        TensorView{expert_weights, DType::kF32, Shape{tokens, params.top_k}});
}

}  // namespace moeserve::ops
