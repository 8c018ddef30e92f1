// CUDA op: causal paged attention (ops::attention for GQA, ops::mla_attention_absorbed for MLA)
// for any mix of prefill, chunked-prefill and decode rows. One block of kWarps warps per
// (query row, head): warp w takes key tiles w, w + kWarps, ... (32 keys a tile, one per lane for
// the scores, float4 loads when the layout allows), keeping its own online softmax (running max,
// denominator) and value accumulator (value_dim / 32 floats per lane); the warps' partial
// results are merged through shared memory at the end. Splitting the keys over warps keeps a
// decode step (one row per sequence) from running a few long serial warps. Decode batches of a
// GQA model with enough rows run the group kernel below instead (one block per (row, kv head)).
// Exact, SIMT (prefill-sized batches take attention_prefill_mma.cu's tensor-core tiles instead).
// Sparse rows (AttentionArgs::key_positions, DeepSeek-V3.2) run the per-head kernel over their chosen keys.
// Every kernel here and in the prefill files also takes sliding windows, Llama 4's chunks and
// attention temperature (paged_cache.cuh's lowest_key, row_scale) and GPT-OSS's sinks, which
// join each head's softmax when the partial results are merged.
#include "kernels/cuda/paged_cache.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarps = 8;  // one 32-key tile each for contexts up to 256 keys
constexpr int kValuesPerLane = kMaxValueDim / 32;

template <typename Kv>
__device__ __forceinline__ float dot(const float* q, const Kv* k, int dim, bool vector_ok) {
  float sum = 0.0f;
  if (vector_ok) {
    const float4* q4 = reinterpret_cast<const float4*>(q);
#pragma unroll 16
    for (int i = 0; i < dim / 4; ++i) {
      const float4 a = q4[i];
      const float4 b = kv_load4(k + 4 * i);
      sum += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
    }
  } else {
    for (int d = 0; d < dim; ++d) sum += q[d] * kv_load(k + d);
  }
  return sum;
}

template <typename Kv>
__global__ void __launch_bounds__(kWarps * 32, 2) paged_attention_kernel(AttentionArgs args) {
  start_after_prior_grids();
  __shared__ __align__(16) float q[kMaxKeyDim];
  __shared__ float part_max[kWarps];
  __shared__ float part_den[kWarps];
  __shared__ float part_acc[kWarps][kMaxValueDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int token = blockIdx.x;
  const int head = blockIdx.y;
  const int kv_head = head / args.group;
  const float* q_row = args.q + static_cast<int64_t>(token) * args.q_stride + static_cast<int64_t>(head) * args.key_dim;
  const float scale = row_scale(args, args.positions[token]);
  for (int d = threadIdx.x; d < args.key_dim; d += blockDim.x) q[d] = q_row[d] * scale;
  __syncthreads();

  const KeyRange row = key_range(args, token, 1, kv_head);
  const int position = row.last, first = row.first, key_offset = row.key_offset, value_offset = row.value_offset;
  const int32_t* table = row.table;
  const bool vector_ok = (args.key_dim % 4) == 0 && (key_offset % 4) == 0 && (args.entry_size % 4) == 0;
  const bool values_vec4 = args.value_dim <= 128 && args.value_dim % 4 == 0 && value_offset % 4 == 0 &&
                           args.entry_size % 4 == 0;

  float running_max = -INFINITY;
  float denominator = 0.0f;
  float acc[kValuesPerLane];
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) acc[i] = 0.0f;

  // The row's keys: first .. position, or (sparse) its chosen positions up to the first -1.
  const int32_t* chosen =
      args.key_positions != nullptr ? args.key_positions + static_cast<int64_t>(token) * args.keys_per_row : nullptr;
  int num_keys = position - first + 1;
  if (chosen != nullptr) {
    num_keys = 0;
    while (num_keys < args.keys_per_row && chosen[num_keys] >= 0) ++num_keys;
  }
  for (int tile = warp * 32; tile < num_keys; tile += 32 * kWarps) {
    const bool valid = tile + lane < num_keys;
    const int key = !valid ? 0 : chosen != nullptr ? chosen[tile + lane] : first + tile + lane;
    const float score = valid ? dot(q, cache_entry<Kv>(args, table, key) + key_offset, args.key_dim, vector_ok)
                              : -INFINITY;
    const float new_max = fmaxf(running_max, warp_max(score));
    const float correction = expf(running_max - new_max);  // 0 on the warp's first tile
    const float p = valid ? expf(score - new_max) : 0.0f;
    denominator = denominator * correction + warp_sum(p);
    running_max = new_max;
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) acc[i] *= correction;
    const int tile_keys = min(32, num_keys - tile);
    // Each lane found its own key's entry for the score; the value loop borrows it by shuffle
    // instead of walking the block table again per key.
    const Kv* own_values = (valid ? cache_entry<Kv>(args, table, key) : kv_base<Kv>(args.cache)) + value_offset;
    auto key_values = [&](int j, float& pj) {  // key j's probability and value row, from lane j
      pj = __shfl_sync(0xffffffffu, p, j);
      return reinterpret_cast<const Kv*>(__shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(own_values), j));
    };
    if (values_vec4) {  // lane owns dims [4 lane, 4 lane + 4): one float4 per key, 16 keys in flight
#pragma unroll 16
      for (int j = 0; j < tile_keys; ++j) {
        float pj;
        const Kv* v = key_values(j, pj);
        if (4 * lane < args.value_dim) {
          const float4 v4 = kv_load4(v + 4 * lane);
          acc[0] += pj * v4.x;
          acc[1] += pj * v4.y;
          acc[2] += pj * v4.z;
          acc[3] += pj * v4.w;
        }
      }
    } else {
#pragma unroll 4
      for (int j = 0; j < tile_keys; ++j) {
        float pj;
        const Kv* v = key_values(j, pj);
#pragma unroll
        for (int i = 0; i < kValuesPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < args.value_dim) acc[i] += pj * kv_load(v + d);
        }
      }
    }
  }
  if (lane == 0) {
    part_max[warp] = running_max;
    part_den[warp] = denominator;
  }
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) {
    const int d = values_vec4 ? 4 * lane + i : lane + 32 * i;  // vec4: acc[0..3] only
    if ((!values_vec4 || i < 4) && d < args.value_dim) part_acc[warp][d] = acc[i];
  }
  __syncthreads();
  // A sink (GPT-OSS) is one more logit of the softmax, with no value.
  const float sink = sink_logit(args, head);
  float global_max = sink;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) global_max = fmaxf(global_max, part_max[w]);
  float weights[kWarps];
  float total = sink == -INFINITY ? 0.0f : expf(sink - global_max);
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    weights[w] = part_max[w] == -INFINITY ? 0.0f : expf(part_max[w] - global_max);  // warps with no keys
    total += weights[w] * part_den[w];
  }
  float* out = args.out + (static_cast<int64_t>(token) * args.num_heads + head) * args.value_dim;
  for (int d = threadIdx.x; d < args.value_dim; d += blockDim.x) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += weights[w] == 0.0f ? 0.0f : weights[w] * part_acc[w][d];
    out[d] = sum / total * args.value_scale;
  }
}

// GQA with many rows (decode batches): one block per (row, kv head) computes all kGroup query
// heads that share the kv head, so each key and value row is read once for the group instead of
// once per query head. Same tiling and online softmax as above, kGroup running states per lane.
constexpr int kGqaMaxDim = 128;
// 4 warps: with 8 (as the per-head kernel) a 64-sequence step measured 0.62 instead of 0.39 ms.
constexpr int kGqaWarps = 4;
constexpr int kGqaValuesPerLane = kGqaMaxDim / 32;
// Below this many (row, kv head) blocks the per-head kernel keeps more SMs busy.
constexpr int kGqaMinBlocks = 128;

template <int kGroup, typename Kv>
__global__ void __launch_bounds__(kGqaWarps * 32) paged_attention_gqa_kernel(AttentionArgs args) {
  start_after_prior_grids();
  __shared__ __align__(16) float q[kGroup][kGqaMaxDim];
  __shared__ float part_max[kGqaWarps][kGroup];
  __shared__ float part_den[kGqaWarps][kGroup];
  __shared__ float part_acc[kGqaWarps][kGroup][kGqaMaxDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int token = blockIdx.x;
  const int kv_head = blockIdx.y;
  const int head0 = kv_head * kGroup;  // heads head0 .. head0 + kGroup - 1 read this kv head
  const float* q_rows = args.q + static_cast<int64_t>(token) * args.q_stride + static_cast<int64_t>(head0) * args.key_dim;
  const float scale = row_scale(args, args.positions[token]);
  for (int i = threadIdx.x; i < kGroup * args.key_dim; i += blockDim.x)
    q[i / args.key_dim][i % args.key_dim] = q_rows[i] * scale;
  __syncthreads();

  const KeyRange row = key_range(args, token, 1, kv_head);
  const int position = row.last, first = row.first, key_offset = row.key_offset, value_offset = row.value_offset;
  const int32_t* table = row.table;

  float running_max[kGroup], denominator[kGroup], acc[kGroup][kGqaValuesPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    running_max[g] = -INFINITY;
    denominator[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < kGqaValuesPerLane; ++i) acc[g][i] = 0.0f;
  }
  for (int tile = first + warp * 32; tile <= position; tile += 32 * kGqaWarps) {
    const int key = tile + lane;
    const bool valid = key <= position;
    float score[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) score[g] = 0.0f;
    if (valid) {
      const Kv* key_row = cache_entry<Kv>(args, table, key) + key_offset;
#pragma unroll 4
      for (int i = 0; i < args.key_dim / 4; ++i) {
        const float4 k = kv_load4(key_row + 4 * i);
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          const float4 qg = reinterpret_cast<const float4*>(q[g])[i];
          score[g] += qg.x * k.x + qg.y * k.y + qg.z * k.z + qg.w * k.w;
        }
      }
    }
    float p[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const float s = valid ? score[g] : -INFINITY;
      const float new_max = fmaxf(running_max[g], warp_max(s));
      const float correction = expf(running_max[g] - new_max);  // 0 on the warp's first tile
      p[g] = valid ? expf(s - new_max) : 0.0f;
      denominator[g] = denominator[g] * correction + warp_sum(p[g]);
      running_max[g] = new_max;
#pragma unroll
      for (int i = 0; i < kGqaValuesPerLane; ++i) acc[g][i] *= correction;
    }
    const int tile_keys = min(32, position - tile + 1);
    const Kv* own_values = (valid ? cache_entry<Kv>(args, table, key) : kv_base<Kv>(args.cache)) + value_offset;
#pragma unroll 4
    for (int j = 0; j < tile_keys; ++j) {
      const Kv* v = reinterpret_cast<const Kv*>(__shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(own_values), j));
      float values[kGqaValuesPerLane];
#pragma unroll
      for (int i = 0; i < kGqaValuesPerLane; ++i) {
        const int d = lane + 32 * i;
        values[i] = d < args.value_dim ? kv_load(v + d) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const float pj = __shfl_sync(0xffffffffu, p[g], j);
#pragma unroll
        for (int i = 0; i < kGqaValuesPerLane; ++i) acc[g][i] += pj * values[i];
      }
    }
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (lane == 0) {
      part_max[warp][g] = running_max[g];
      part_den[warp][g] = denominator[g];
    }
#pragma unroll
    for (int i = 0; i < kGqaValuesPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < args.value_dim) part_acc[warp][g][d] = acc[g][i];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kGroup * args.value_dim; i += blockDim.x) {
    const int g = i / args.value_dim;
    const int d = i % args.value_dim;
    const float sink = sink_logit(args, head0 + g);
    float global_max = sink;
#pragma unroll
    for (int w = 0; w < kGqaWarps; ++w) global_max = fmaxf(global_max, part_max[w][g]);
    float total = sink == -INFINITY ? 0.0f : expf(sink - global_max), sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kGqaWarps; ++w) {
      if (part_max[w][g] == -INFINITY) continue;  // a warp with no keys
      const float weight = expf(part_max[w][g] - global_max);
      total += weight * part_den[w][g];
      sum += weight * part_acc[w][g][d];
    }
    args.out[(static_cast<int64_t>(token) * args.num_heads + head0 + g) * args.value_dim + d] =
        sum / total * args.value_scale;
  }
}

template <int kGroup, typename Kv>
void launch_gqa(const GpuExec& exec, const AttentionArgs& args) {
  const dim3 grid(args.tokens, args.num_heads / kGroup);
  launch_dependent("paged_attention (gqa)", paged_attention_gqa_kernel<kGroup, Kv>, grid, kGqaWarps * 32, 0, exec,
                   args);
}

// The group kernel's layout needs: float4 key rows of at most kGqaMaxDim, heads / group kv heads.
bool gqa_kernel_fits(const AttentionArgs& args) {
  const bool group_ok = args.group == 2 || args.group == 4 || args.group == 8;
  return group_ok && args.num_heads % args.group == 0 && args.key_dim <= kGqaMaxDim &&
         args.value_dim <= kGqaMaxDim && args.key_dim % 4 == 0 && (args.key_offset % 4) == 0 &&
         (args.kv_head_stride % 4) == 0 && (args.entry_size % 4) == 0 &&
         int64_t(args.tokens) * (args.num_heads / args.group) >= kGqaMinBlocks;
}

template <typename Kv>
void launch(const GpuExec& exec, const AttentionArgs& args) {
  if (args.key_positions == nullptr && gqa_kernel_fits(args)) {
    if (args.group == 2) return launch_gqa<2, Kv>(exec, args);
    if (args.group == 4) return launch_gqa<4, Kv>(exec, args);
    return launch_gqa<8, Kv>(exec, args);
  }
  const dim3 grid(args.tokens, args.num_heads);
  launch_dependent("paged_attention", paged_attention_kernel<Kv>, grid, kWarps * 32, 0, exec, args);
}

}  // namespace

void paged_attention(const GpuExec& exec, const AttentionArgs& args) {
  if (args.tokens == 0) return;
  if (args.value_dim > kMaxValueDim || args.key_dim > kMaxKeyDim) {
    std::fprintf(stderr, "moeserve: paged_attention: key_dim %d / value_dim %d exceed %d / %d\n", args.key_dim,
                 args.value_dim, kMaxKeyDim, kMaxValueDim);
    std::abort();
  }
  if (mla_attention_takes(args)) return paged_attention_mla(exec, args);  // (attention_mla.cu)
  if (args.cache_fp8) return launch<uint8_t>(exec, args);
  launch<float>(exec, args);
}

}  // namespace moeserve::cuda
