// CUDA op: MoE routing for every variant of ops::RouterParams (softmax or sigmoid scores, the
// optional selection bias, group-limited selection by group max or top-2 sum, renormalisation,
// routed scaling, or GPT-OSS's softmax over the top-k logits), one warp per token. Selection
// follows the CPU reference exactly: the k largest selection values, the lower expert index
// first on ties.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kMaxGroups = 64;

// Index of the largest value among unmasked entries (lowest index on ties), over the warp.
__device__ int warp_argmax(const float* values, const bool* taken, int count) {
  float best = -INFINITY;
  int best_idx = INT32_MAX;
  for (int i = threadIdx.x & 31; i < count; i += 32) {
    if (taken[i]) continue;
    if (best_idx == INT32_MAX || values[i] > best) {  // i grows: ties keep the lower index
      best = values[i];
      best_idx = i;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int other_idx = __shfl_xor_sync(0xffffffffu, best_idx, offset);
    if (other_idx != INT32_MAX && (best_idx == INT32_MAX || other > best || (other == best && other_idx < best_idx))) {
      best = other;
      best_idx = other_idx;
    }
  }
  return best_idx;
}

__device__ void mask_groups(float* selection, bool* taken, int experts, const ops::RouterParams& params,
                            float* group_scores, bool* group_taken) {
  const int lane = threadIdx.x & 31;
  const int group_size = experts / params.num_groups;
  for (int group = lane; group < params.num_groups; group += 32) {
    const float* members = selection + group * group_size;
    float best = -INFINITY, second = -INFINITY;
    int best_idx = -1;
    for (int i = 0; i < group_size; ++i) {
      if (best_idx < 0 || members[i] > best) {
        best = members[i];
        best_idx = i;
      }
    }
    for (int i = 0; i < group_size; ++i) {
      if (i != best_idx && (second == -INFINITY || members[i] > second)) second = members[i];
    }
    group_scores[group] = params.group_score_top2_sum ? (group_size >= 2 ? best + second : best) : best;
    group_taken[group] = false;
  }
  __syncwarp();
  bool* keep = group_taken;  // reused: true = kept, after the loop below
  for (int round = 0; round < params.topk_groups; ++round) {
    const int group = warp_argmax(group_scores, keep, params.num_groups);
    if (lane == 0) keep[group] = true;
    __syncwarp();
  }
  for (int expert = lane; expert < experts; expert += 32) {
    if (!keep[expert / group_size]) selection[expert] = -INFINITY;
    taken[expert] = false;
  }
  __syncwarp();
}

__global__ void route_kernel(const float* logits, const float* bias, int experts, ops::RouterParams params,
                             int32_t* expert_ids, float* expert_weights) {
  start_after_prior_grids();
  __shared__ float scores[kMaxExperts];
  __shared__ float selection[kMaxExperts];
  __shared__ bool taken[kMaxExperts];
  __shared__ float group_scores[kMaxGroups];
  __shared__ bool group_flags[kMaxGroups];
  const int token = blockIdx.x;
  const int lane = threadIdx.x;
  const float* row = logits + static_cast<int64_t>(token) * experts;
  if (params.softmax_after_topk) {  // select on the raw logits; softmax over the k chosen below
    for (int e = lane; e < experts; e += 32) scores[e] = row[e];
  } else if (params.sigmoid) {
    for (int e = lane; e < experts; e += 32) scores[e] = 1.0f / (1.0f + expf(-row[e]));
  } else {
    float max_logit = -INFINITY;
    for (int e = lane; e < experts; e += 32) max_logit = fmaxf(max_logit, row[e]);
    max_logit = warp_max(max_logit);
    float sum = 0.0f;
    for (int e = lane; e < experts; e += 32) sum += scores[e] = expf(row[e] - max_logit);
    sum = warp_sum(sum);
    for (int e = lane; e < experts; e += 32) scores[e] /= sum;
  }
  for (int e = lane; e < experts; e += 32) {
    selection[e] = scores[e] + (bias != nullptr ? bias[e] : 0.0f);
    taken[e] = false;
  }
  __syncwarp();
  if (params.num_groups > 1) mask_groups(selection, taken, experts, params, group_scores, group_flags);
  float weight_sum = 0.0f;
  int chosen_ids[32];
  for (int k = 0; k < params.top_k; ++k) {
    const int expert = warp_argmax(selection, taken, experts);
    if (lane == 0) taken[expert] = true;
    __syncwarp();
    chosen_ids[k] = expert;
    weight_sum += scores[expert];
  }
  if (lane == 0 && params.softmax_after_topk) {
    float max_logit = -INFINITY;
    for (int k = 0; k < params.top_k; ++k) max_logit = fmaxf(max_logit, scores[chosen_ids[k]]);
    float weights[32], sum = 0.0f;
    for (int k = 0; k < params.top_k; ++k) sum += weights[k] = expf(scores[chosen_ids[k]] - max_logit);
    for (int k = 0; k < params.top_k; ++k) {
      expert_ids[token * params.top_k + k] = chosen_ids[k];
      expert_weights[token * params.top_k + k] = weights[k] / sum * params.scaling_factor;
    }
  } else if (lane == 0) {
    const float norm = params.renormalize ? 1.0f / (weight_sum + 1e-20f) : 1.0f;
    for (int k = 0; k < params.top_k; ++k) {
      expert_ids[token * params.top_k + k] = chosen_ids[k];
      expert_weights[token * params.top_k + k] = scores[chosen_ids[k]] * norm * params.scaling_factor;
    }
  }
}

}  // namespace

void route(const GpuExec& exec, const float* logits, const float* selection_bias, int tokens, int experts,
           const ops::RouterParams& params, int32_t* expert_ids, float* expert_weights) {
  if (tokens == 0) return;
  if (experts > kMaxExperts || params.num_groups > kMaxGroups || params.top_k > 32) {
    std::fprintf(stderr, "moeserve: route: %d experts / %d groups / top-%d exceed the kernel's limits\n", experts,
                 params.num_groups, params.top_k);
    std::abort();
  }
  launch_dependent("route", route_kernel, tokens, 32, 0, exec, logits, selection_bias, experts, params, expert_ids,
                   expert_weights);
}

}  // namespace moeserve::cuda
