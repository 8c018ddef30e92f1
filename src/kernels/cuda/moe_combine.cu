// CUDA op: the MoE combine — each token's top-k expert outputs (in permuted order) weighted and
// summed, plus the shared expert (scaled by sigmoid of its gate when the model has one). A
// gather, not a scatter: no atomics, the same result every run. Optionally fused with the
// residual add + RMSNorm that follows the MoE block (one launch fewer per layer), and with the
// experts' split-K partial sums added up here (expert_splits; one launch fewer again). Rows of
// float4-aligned widths up to kMaxVectors float4s per thread are kept in registers between the
// sum and the norm and loaded all at once (a decode step's combine is one block per token, so
// its time is its chain of dependent loads); other widths go element by element.
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kMaxVectors = 4;

// kSplits: how many slices of expert_out the vector path may have to add up (1 or
// kMaxFusedSplits; the register arrays for them are sized by it).
template <bool kVector, int kSplits>
__global__ void __launch_bounds__(kThreads) moe_combine_kernel(MoeCombineArgs args) {
  start_after_prior_grids();
  __shared__ float scratch[32];
  __shared__ const float* expert_rows[kMaxCombineTopK];  // the token's k-th expert output row
  __shared__ float weights[kMaxCombineTopK];
  const int token = blockIdx.x;
  const int64_t row = static_cast<int64_t>(token) * args.hidden;
  for (int k = threadIdx.x; k < args.top_k; k += kThreads) {
    expert_rows[k] = args.expert_out + static_cast<int64_t>(args.positions[token * args.top_k + k]) * args.hidden;
    weights[k] = args.weights[token * args.top_k + k];
  }
  __syncthreads();
  float shared_scale = 1.0f;
  if (args.shared_gate_logit != nullptr) shared_scale = 1.0f / (1.0f + expf(-args.shared_gate_logit[token]));
  float sum_squares = 0.0f;
  if constexpr (kVector) {
    const int vectors = args.hidden / 4;
    float4 v[kMaxVectors];
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) v[j] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t split_stride4 = args.expert_split_stride / 4;
#pragma unroll 2
    for (int k = 0; k < args.top_k; ++k) {  // the thread's vectors (and splits) of one expert row load together
      const float4* e4 = reinterpret_cast<const float4*>(expert_rows[k]);
      const float w = weights[k];
      if (w == 0.0f) continue;  // its row may be unwritten (another EP rank's slot)
      float4 e[kMaxVectors][kSplits];
#pragma unroll
      for (int s = 0; s < kSplits; ++s)
#pragma unroll
        for (int j = 0; j < kMaxVectors; ++j) {
          const int i = threadIdx.x + j * kThreads;
          if (s < args.expert_splits && i < vectors) e[j][s] = e4[s * split_stride4 + i];
        }
#pragma unroll
      for (int j = 0; j < kMaxVectors; ++j) {
        const int i = threadIdx.x + j * kThreads;
        if (i >= vectors) break;
        float4 sum = e[j][0];
#pragma unroll
        for (int s = 1; s < kSplits; ++s)
          if (s < args.expert_splits)
            sum = sum + e[j][s];
        v[j] = v[j] + w * sum;
      }
    }
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i >= vectors) break;
      float4 sum = v[j];
      if (args.shared_out != nullptr) {
        const float4 e = reinterpret_cast<const float4*>(args.shared_out + row)[i];
        sum = sum + shared_scale * e;
      }
      if (args.residual != nullptr) {
        const float4 r = reinterpret_cast<const float4*>(args.residual + row)[i];
        sum = r + sum;
      }
      v[j] = sum;
    }
    float* dst = args.residual != nullptr ? args.residual : args.out;
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i >= vectors) break;
      reinterpret_cast<float4*>(dst + row)[i] = v[j];
      sum_squares += sum_of_squares(v[j]);
    }
    if (args.residual == nullptr) return;  // uniform over the block
    sum_squares = block_sum(sum_squares, scratch);
    const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.hidden) + args.eps);
#pragma unroll
    for (int j = 0; j < kMaxVectors; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i >= vectors) break;
      store_normed(v[j], inv_rms, args.norm_weight, i, args.normed_f32 != nullptr ? args.normed_f32 + row : nullptr,
                   args.normed_bf16 != nullptr ? args.normed_bf16 + row : nullptr);
    }
    return;
  }
  for (int d = threadIdx.x; d < args.hidden; d += kThreads) {
    float sum = 0.0f;
    for (int k = 0; k < args.top_k; ++k) {
      if (weights[k] == 0.0f) continue;
      float e = expert_rows[k][d];
      for (int s = 1; s < args.expert_splits; ++s) e += expert_rows[k][s * args.expert_split_stride + d];
      sum += weights[k] * e;
    }
    if (args.shared_out != nullptr) sum += shared_scale * args.shared_out[row + d];
    if (args.residual == nullptr) {
      args.out[row + d] = sum;
    } else {
      const float value = args.residual[row + d] + sum;
      args.residual[row + d] = value;
      sum_squares += value * value;
    }
  }
  if (args.residual == nullptr) return;  // uniform over the block
  sum_squares = block_sum(sum_squares, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(args.hidden) + args.eps);
  for (int d = threadIdx.x; d < args.hidden; d += kThreads) {
    const float value = args.residual[row + d] * inv_rms * bf16_bits_to_float(args.norm_weight[d]);
    if (args.normed_f32 != nullptr) args.normed_f32[row + d] = value;
    if (args.normed_bf16 != nullptr) args.normed_bf16[row + d] = float_to_bf16_bits(value);
  }
}

}  // namespace

void moe_combine(const GpuExec& exec, const MoeCombineArgs& args) {
  if (args.tokens == 0) return;
  if (args.top_k > kMaxCombineTopK || args.expert_splits < 1 || args.expert_splits > kMaxFusedSplits) {
    std::fprintf(stderr, "moeserve: moe_combine: top_k %d (at most %d), %d expert splits (at most %d)\n", args.top_k,
                 kMaxCombineTopK, args.expert_splits, kMaxFusedSplits);
    std::abort();
  }
  const bool vector = args.hidden % 4 == 0 && args.expert_split_stride % 4 == 0 &&
                      args.hidden / 4 <= kThreads * kMaxVectors &&
                      aligned(args.expert_out, 16) && aligned(args.shared_out, 16) && aligned(args.out, 16) &&
                      aligned(args.residual, 16) && aligned(args.normed_f32, 16) && aligned(args.normed_bf16, 8) &&
                      aligned(args.norm_weight, 8);
  if (vector && args.expert_splits > 1) {
    launch_dependent("moe_combine", moe_combine_kernel<true, kMaxFusedSplits>, args.tokens, kThreads, 0, exec, args);
  } else if (vector) {
    launch_dependent("moe_combine", moe_combine_kernel<true, 1>, args.tokens, kThreads, 0, exec, args);
  } else {
    launch_dependent("moe_combine", moe_combine_kernel<false, 1>, args.tokens, kThreads, 0, exec, args);
  }
}

}  // namespace moeserve::cuda
