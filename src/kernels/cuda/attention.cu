// CUDA op: causal paged attention (ops::attention for GQA, ops::mla_attention_absorbed for MLA)
// for any mix of prefill, chunked-prefill and decode rows. One warp per (query row, head); the
// warp walks the row's visible keys 32 at a time (one key per lane for the scores), keeping an
// online softmax (running max and denominator) and the value accumulator in registers
// (value_dim / 32 floats per lane). Simple and exact; not yet the tensor-core flash kernel.
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kValuesPerLane = kMaxValueDim / 32;

__device__ __forceinline__ const float* cache_entry(const AttentionArgs& args, const int32_t* table, int position) {
  const int64_t block = table[position / args.block_size];
  return args.cache + (block * args.block_size + position % args.block_size) * args.entry_size;
}

__global__ void paged_attention_kernel(AttentionArgs args) {
  __shared__ float q_shared[kWarpsPerBlock][kMaxKeyDim];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int token = blockIdx.x;
  const int head = blockIdx.y * kWarpsPerBlock + warp;
  if (head >= args.num_heads) return;  // no block-wide barrier below
  const int kv_head = head / args.group;
  float* q = q_shared[warp];
  const float* q_row = args.q + static_cast<int64_t>(token) * args.q_stride + static_cast<int64_t>(head) * args.key_dim;
  for (int d = lane; d < args.key_dim; d += 32) q[d] = q_row[d];
  __syncwarp();

  const int position = args.positions[token];
  const int32_t* table = args.block_tables + args.table_offsets[token];
  const int first = args.sliding_window > 0 ? max(0, position - args.sliding_window + 1) : 0;
  const int key_offset = args.key_offset + kv_head * args.kv_head_stride;
  const int value_offset = args.value_offset + kv_head * args.kv_head_stride;

  float running_max = -INFINITY;
  float denominator = 0.0f;
  float acc[kValuesPerLane];
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) acc[i] = 0.0f;

  for (int tile = first; tile <= position; tile += 32) {
    const int key = tile + lane;
    const bool valid = key <= position;
    float score = -INFINITY;
    const float* entry = nullptr;
    if (valid) {
      entry = cache_entry(args, table, key);
      const float* k = entry + key_offset;
      float dot = 0.0f;
      for (int d = 0; d < args.key_dim; ++d) dot += q[d] * k[d];
      score = dot * args.scale;
    }
    const float tile_max = warp_max(score);
    const float new_max = fmaxf(running_max, tile_max);
    const float correction = expf(running_max - new_max);  // 0 on the first tile
    const float p = valid ? expf(score - new_max) : 0.0f;
    denominator = denominator * correction + warp_sum(p);
    running_max = new_max;
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) acc[i] *= correction;
    const int tile_keys = min(32, position - tile + 1);
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
  float* out = args.out + (static_cast<int64_t>(token) * args.num_heads + head) * args.value_dim;
  const float inv = 1.0f / denominator;
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < args.value_dim) out[d] = acc[i] * inv;
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
  const dim3 grid(args.tokens, ceil_div(args.num_heads, kWarpsPerBlock));
  paged_attention_kernel<<<grid, kWarpsPerBlock * 32, 0, stream_of(exec)>>>(args);
  check_launch("paged_attention");
}

}  // namespace moeserve::cuda
