// CUDA op: MLA's absorbed attention (ops::paged_attention over the latent cache: one kv head,
// key = the whole [c | k_pe] entry, value = c) for decode rows, kHeads query heads a block. The
// per-head kernel (attention.cu) reads every latent row once per head — 128 times for
// DeepSeek-V3, from L2 — and runs each 576-wide dot product in one lane; here a block stages a
// tile of kKeys latent rows in shared memory once and every thread computes one (head, key) score
// from it (float4 reads), then each thread accumulates its value dims for all kHeads heads:
//   S [kHeads, kKeys] = q_h · k_t                    (q pre-scaled, thread = (head, key))
//   online softmax per head over the tile            (a half-warp per head)
//   acc [kHeads, value_dim] = acc · correction + P · V    (V = the tile's first value_dim columns)
// Float32 math as the per-head kernel; the keys of a sparse row (DeepSeek-V3.2's
// key_positions) work the same. No sinks, windows, chunks or temperature (MLA models have none).
// H100, session 35 (bench/results/2026-12-07-h100-mla-decode-attention.json): DeepSeek-V3's
// attention at batch 64 4,931 → 940 µs a 4-layer step, decode 4,740 → 6,665 tok/s. A block walks
// its row's keys alone in ~5 µs tiles, so few blocks lose to the per-head kernel
// (mla_attention_takes); splitting the keys over blocks, and tensor cores, are what is left.
#include "kernels/cuda/paged_cache.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kHeads = 16;  // query heads a block
constexpr int kKeys = 16;   // latent rows a tile: kHeads × kKeys = 256 scores, one a thread
constexpr int kThreads = kHeads * kKeys;
constexpr int kDimsPerThread = kMaxValueDim / kThreads;  // value dims a thread accumulates (2)

// Row stride of the staged q and key rows: ≡ 4 (mod 32) floats, so that the float4 reads of a
// warp's 4 heads and 8 keys (scores below) fall in distinct banks.
__host__ __device__ inline int row_stride(int key_dim) { return (key_dim + 31) / 32 * 32 + 4; }

// Shared memory: q [kHeads][stride], the tile [kKeys][stride], the scores, then probabilities
// [kHeads][kKeys], and each head's correction [kHeads].
size_t shared_bytes(int key_dim) {
  return sizeof(float) * (size_t(kHeads + kKeys) * row_stride(key_dim) + 2 * kHeads * kKeys + kHeads);
}

template <typename Kv>
__global__ void __launch_bounds__(kThreads) mla_decode_attention_kernel(AttentionArgs args) {
  start_after_prior_grids();
  extern __shared__ __align__(16) float shared[];
  const int key_dim = args.key_dim;
  const int stride = row_stride(key_dim);
  float* q = shared;                           // [kHeads][stride], times the score scale
  float* tile = q + kHeads * stride;           // [kKeys][stride]
  float* scores = tile + kKeys * stride;       // [kHeads][kKeys]
  float* probs = scores + kHeads * kKeys;      // [kHeads][kKeys]
  float* correction = probs + kHeads * kKeys;  // [kHeads]
  const int token = blockIdx.x;
  const int head0 = blockIdx.y * kHeads;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const float* q_rows = args.q + static_cast<int64_t>(token) * args.q_stride + static_cast<int64_t>(head0) * key_dim;
  for (int i = tid; i < kHeads * key_dim; i += kThreads) {
    const int g = i / key_dim;
    q[g * stride + i - g * key_dim] = q_rows[i] * args.scale;
  }

  const int position = args.positions[token];
  const int32_t* table = args.block_tables + args.table_offsets[token];
  const int32_t* chosen =
      args.key_positions != nullptr ? args.key_positions + static_cast<int64_t>(token) * args.keys_per_row : nullptr;
  int num_keys = position + 1;
  if (chosen != nullptr) {
    num_keys = 0;
    while (num_keys < args.keys_per_row && chosen[num_keys] >= 0) ++num_keys;
  }

  // Scores: warp w takes heads 4 (w % 4) .. + 3 and keys 8 (w / 4) .. + 7, a lane one pair.
  const int score_head = (warp % 4) * 4 + lane / 8, score_key = (warp / 4) * 8 + lane % 8;
  // Softmax: a half-warp per head (h), lane t of it key t.
  const int h = tid / kKeys, t = tid % kKeys;
  float running_max = -INFINITY, denominator = 0.0f;  // head h's, kept by its half-warp
  // Values: the thread's dims tid + kThreads · i of every head.
  float acc[kHeads][kDimsPerThread];
#pragma unroll
  for (int g = 0; g < kHeads; ++g)
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) acc[g][i] = 0.0f;

  __shared__ const Kv* rows[kKeys];  // the tile's cache entries (null past the row's keys)
  const int vectors = key_dim / 4, tile_vectors = kKeys * vectors;
  for (int first = 0; first < num_keys; first += kKeys) {
    const int tile_keys = min(kKeys, num_keys - first);
    __syncthreads();  // the previous tile's values are read
    if (tid < kKeys) {
      rows[tid] = tid >= tile_keys
                      ? nullptr
                      : cache_entry<Kv>(args, table, chosen != nullptr ? chosen[first + tid] : first + tid);
    }
    __syncthreads();
    // kLoads float4s a thread in flight before any is stored: the tile's latency is a few rounds
    // of loads, not one round a float4.
    constexpr int kLoads = 8;
    for (int base = tid; base < tile_vectors; base += kLoads * kThreads) {
      float4 values[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const int i = base + u * kThreads, row = i / vectors;
        values[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < tile_vectors && rows[row] != nullptr) values[u] = kv_load4(rows[row] + 4 * (i - row * vectors));
      }
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const int i = base + u * kThreads, row = i / vectors;
        if (i < tile_vectors) *reinterpret_cast<float4*>(tile + row * stride + 4 * (i - row * vectors)) = values[u];
      }
    }
    __syncthreads();
    {
      const float4* qh = reinterpret_cast<const float4*>(q + score_head * stride);
      const float4* kt = reinterpret_cast<const float4*>(tile + score_key * stride);
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll 4
      for (int c = 0; c < vectors; ++c) {
        const float4 a = qh[c], b = kt[c];
        s0 += a.x * b.x + a.y * b.y;
        s1 += a.z * b.z + a.w * b.w;
      }
      scores[score_head * kKeys + score_key] = s0 + s1;
    }
    __syncthreads();
    // Head h's online softmax over the tile: its kKeys scores in one half-warp.
    const float score = t < tile_keys ? scores[h * kKeys + t] : -INFINITY;
    float tile_max = score;
#pragma unroll
    for (int offset = kKeys / 2; offset > 0; offset /= 2) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
    }
    const float new_max = fmaxf(running_max, tile_max);
    const float p = t < tile_keys ? expf(score - new_max) : 0.0f;
    float tile_sum = p;
#pragma unroll
    for (int offset = kKeys / 2; offset > 0; offset /= 2) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
    const float scale_old = expf(running_max - new_max);  // 0 on the first tile
    denominator = denominator * scale_old + tile_sum;
    running_max = new_max;
    probs[h * kKeys + t] = p;
    if (t == 0) correction[h] = scale_old;
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kHeads; ++g) {
      const float c = correction[g];
#pragma unroll
      for (int i = 0; i < kDimsPerThread; ++i) acc[g][i] *= c;
    }
    for (int k = 0; k < tile_keys; ++k) {
      float v[kDimsPerThread];
#pragma unroll
      for (int i = 0; i < kDimsPerThread; ++i) {
        const int d = tid + kThreads * i;
        v[i] = d < args.value_dim ? tile[k * stride + d] : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < kHeads; ++g) {
        const float pk = probs[g * kKeys + k];
#pragma unroll
        for (int i = 0; i < kDimsPerThread; ++i) acc[g][i] += pk * v[i];
      }
    }
  }
  // Each head's denominator, from its half-warp to every thread.
  __syncthreads();
  if (t == 0) correction[h] = denominator;
  __syncthreads();
#pragma unroll
  for (int g = 0; g < kHeads; ++g) {
    float* out = args.out + (static_cast<int64_t>(token) * args.num_heads + head0 + g) * args.value_dim;
    const float inv = args.value_scale / correction[g];
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int d = tid + kThreads * i;
      if (d < args.value_dim) out[d] = acc[g][i] * inv;
    }
  }
}

template <typename Kv>
void launch(const GpuExec& exec, const AttentionArgs& args) {
  const auto kernel = mla_decode_attention_kernel<Kv>;
  const size_t bytes = shared_bytes(args.key_dim);
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  launch_dependent("paged_attention (mla)", kernel, dim3(args.tokens, args.num_heads / kHeads), kThreads, bytes, exec,
                   args);
}

}  // namespace

bool mla_attention_takes(const AttentionArgs& args) {
  const bool one_latent = args.group == args.num_heads && args.kv_head_stride == 0 && args.key_offset == 0 &&
                          args.value_offset == 0 && args.value_dim <= args.key_dim;
  const bool plain_causal = args.sinks == nullptr && args.sliding_window == 0 && args.chunk_size == 0 &&
                            args.temperature_floor <= 0.0f;
  const bool float4_rows = args.key_dim % 4 == 0 && args.entry_size % 4 == 0;
  // A block walks its row's keys alone (no split over the keys yet), so below kMinBlocks blocks
  // the per-head kernel, a block per (row, head), finishes first (H100, session 35: DeepSeek-V3
  // at 8 blocks 334 against ~140 µs a step; V2-Lite at 32 2,069 against 2,157; at 64 2,107
  // against 4,113).
  constexpr int64_t kMinBlocks = 32;
  return one_latent && plain_causal && float4_rows && args.num_heads % kHeads == 0 && args.value_dim <= kMaxValueDim &&
         shared_bytes(args.key_dim) <= 160 * 1024 && int64_t(args.tokens) * (args.num_heads / kHeads) >= kMinBlocks;
}

void paged_attention_mla(const GpuExec& exec, const AttentionArgs& args) {
  if (args.tokens == 0) return;
  if (args.cache_fp8) return launch<uint8_t>(exec, args);
  launch<float>(exec, args);
}

}  // namespace moeserve::cuda
