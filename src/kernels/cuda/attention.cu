// CUDA op: causal paged attention (ops::attention for GQA, ops::mla_attention_absorbed for MLA)
// for any mix of prefill, chunked-prefill and decode rows. One block of kWarps warps per
// (query row, head): warp w takes key tiles w, w + kWarps, ... (32 keys a tile, one per lane for
// the scores, float4 loads when the layout allows), keeping its own online softmax (running max,
// denominator) and value accumulator (value_dim / 32 floats per lane); the warps' partial
// results are merged through shared memory at the end. Splitting the keys over warps keeps a
// decode step (one row per sequence) from running a few long serial warps. Exact, SIMT only: not
// yet the tensor-core flash kernel prefill wants.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kValuesPerLane = kMaxValueDim / 32;

__device__ __forceinline__ const float* cache_entry(const AttentionArgs& args, const int32_t* table, int position) {
  const int64_t block = table[position / args.block_size];
  return args.cache + (block * args.block_size + position % args.block_size) * args.entry_size;
}

__device__ __forceinline__ float dot(const float* q, const float* k, int dim, bool vector_ok) {
  float sum = 0.0f;
  if (vector_ok) {
    const float4* q4 = reinterpret_cast<const float4*>(q);
    const float4* k4 = reinterpret_cast<const float4*>(k);
#pragma unroll 8
    for (int i = 0; i < dim / 4; ++i) {
      const float4 a = q4[i];
      const float4 b = k4[i];
      sum += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
    }
  } else {
    for (int d = 0; d < dim; ++d) sum += q[d] * k[d];
  }
  return sum;
}

__global__ void __launch_bounds__(kWarps * 32) paged_attention_kernel(AttentionArgs args) {
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
  for (int d = threadIdx.x; d < args.key_dim; d += blockDim.x) q[d] = q_row[d] * args.scale;
  __syncthreads();

  const int position = args.positions[token];
  const int32_t* table = args.block_tables + args.table_offsets[token];
  const int first = args.sliding_window > 0 ? max(0, position - args.sliding_window + 1) : 0;
  const int key_offset = args.key_offset + kv_head * args.kv_head_stride;
  const int value_offset = args.value_offset + kv_head * args.kv_head_stride;
  const bool vector_ok = (args.key_dim % 4) == 0 && (key_offset % 4) == 0 && (args.entry_size % 4) == 0;

  float running_max = -INFINITY;
  float denominator = 0.0f;
  float acc[kValuesPerLane];
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) acc[i] = 0.0f;

  for (int tile = first + warp * 32; tile <= position; tile += 32 * kWarps) {
    const int key = tile + lane;
    const bool valid = key <= position;
    const float score = valid ? dot(q, cache_entry(args, table, key) + key_offset, args.key_dim, vector_ok) : -INFINITY;
    const float new_max = fmaxf(running_max, warp_max(score));
    const float correction = expf(running_max - new_max);  // 0 on the warp's first tile
    const float p = valid ? expf(score - new_max) : 0.0f;
    denominator = denominator * correction + warp_sum(p);
    running_max = new_max;
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) acc[i] *= correction;
    const int tile_keys = min(32, position - tile + 1);
#pragma unroll 4
    for (int j = 0; j < tile_keys; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const float* v = cache_entry(args, table, tile + j) + value_offset;
#pragma unroll
      for (int i = 0; i < kValuesPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < args.value_dim) acc[i] += pj * v[d];
      }
    }
  }
  if (lane == 0) {
    part_max[warp] = running_max;
    part_den[warp] = denominator;
  }
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < args.value_dim) part_acc[warp][d] = acc[i];
  }
  __syncthreads();
  float global_max = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) global_max = fmaxf(global_max, part_max[w]);
  float weights[kWarps];
  float total = 0.0f;
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
    out[d] = sum / total;
  }
}

}  // namespace

void paged_attention(const GpuExec& exec, const AttentionArgs& args) {
  if (args.tokens == 0) return;
  if (args.value_dim > kMaxValueDim || args.key_dim > kMaxKeyDim) {
    std::fprintf(stderr, "moeserve: paged_attention: key_dim %d / value_dim %d exceed %d / %d\n", args.key_dim,
                 args.value_dim, kMaxKeyDim, kMaxValueDim);
    std::abort();
  }
  const dim3 grid(args.tokens, args.num_heads);
  paged_attention_kernel<<<grid, kWarps * 32, 0, stream_of(exec)>>>(args);
  check_launch("paged_attention");
}

}  // namespace moeserve::cuda
