// CUDA op: rotary position embedding in place (ops::rope): half-split or interleaved pairs,
// cos/sin from float32 position × inv_freq as the CPU reference computes them — once per
// (token, frequency) into shared memory, since every head of a token shares them. Optionally
// also writes each token's cache entry afterwards (ops::kv_write fused, one launch fewer per layer).
#include <type_traits>

#include "kernels/cuda/paged_cache.cuh"
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kBatch = 4;  // pairs (and entry float4s) a thread loads before it stores any

template <typename Kv>
__global__ void __launch_bounds__(kThreads) rope_kernel(RopeArgs args, bool entry_vector) {
  start_after_prior_grids();
  extern __shared__ float trig[];  // [half] cos · factor, then [half] sin · factor
  const int token = blockIdx.x;
  const float position = static_cast<float>(args.positions[token]);
  for (int i = threadIdx.x; i < args.half; i += kThreads) {
    const float angle = position * args.inv_freq[i];
    trig[i] = cosf(angle) * args.attention_factor;
    trig[args.half + i] = sinf(angle) * args.attention_factor;
  }
  __syncthreads();
  float* row = args.x + static_cast<int64_t>(token) * args.token_stride;
  const int pairs = args.heads * args.half;
  // A decode step's rope is one block per token: its time is its rounds of dependent loads, so
  // each thread loads kBatch pairs before rotating and storing them.
  for (int base = threadIdx.x; base < pairs; base += kBatch * kThreads) {
    float* at[kBatch];
    int a[kBatch], b[kBatch], freq[kBatch];
    float x0[kBatch], x1[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int item = base + u * kThreads;
      if (item >= pairs) break;
      const int head = item / args.half;
      freq[u] = item % args.half;
      at[u] = row + static_cast<int64_t>(head) * args.head_stride + args.rotary_offset;
      a[u] = args.interleaved ? 2 * freq[u] : freq[u];
      b[u] = args.interleaved ? 2 * freq[u] + 1 : freq[u] + args.half;
      x0[u] = at[u][a[u]];
      x1[u] = at[u][b[u]];
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (base + u * kThreads >= pairs) break;
      const float c = trig[freq[u]];
      const float s = trig[args.half + freq[u]];
      at[u][a[u]] = x0[u] * c - x1[u] * s;
      at[u][b[u]] = x1[u] * c + x0[u] * s;
    }
  }
  if (args.cache == nullptr) return;
  __syncthreads();  // the whole row is rotated
  Kv* dst = reinterpret_cast<Kv*>(args.cache) + static_cast<int64_t>(args.slots[token]) * args.entry_size;
  const float* entry = row + args.entry_offset;
  // An e4m3 cache holds each value divided by its scale (x / 1 = x: unscaled caches unchanged).
  const auto scaled = [&](float value, int i) {
    if constexpr (std::is_same_v<Kv, float>) return value;
    return value / (i < args.cache_value_begin ? args.cache_scales.k : args.cache_scales.v);
  };
  if (entry_vector) {  // float4s, kBatch in flight per thread
    const float4* src4 = reinterpret_cast<const float4*>(entry);
    const int vectors = args.entry_size / 4;
    for (int base = threadIdx.x; base < vectors; base += kBatch * kThreads) {
      float4 v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (base + u * kThreads < vectors) v[u] = src4[base + u * kThreads];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = 4 * (base + u * kThreads);
        if (i >= args.entry_size) continue;
        kv_store4(dst + i,
                  make_float4(scaled(v[u].x, i), scaled(v[u].y, i + 1), scaled(v[u].z, i + 2), scaled(v[u].w, i + 3)));
      }
    }
    return;
  }
  for (int i = threadIdx.x; i < args.entry_size; i += kThreads) kv_store(dst + i, scaled(entry[i], i));
}

}  // namespace

void rope(const GpuExec& exec, const RopeArgs& args) {
  if (args.tokens == 0 || (args.half == 0 && args.cache == nullptr)) return;
  const bool entry_vector = args.entry_size % 4 == 0 && args.entry_offset % 4 == 0 && args.token_stride % 4 == 0 &&
                            aligned(args.x, 16) && aligned(args.cache, 16);
  launch_dependent("rope", args.cache_fp8 ? rope_kernel<uint8_t> : rope_kernel<float>, args.tokens, kThreads,
                   2 * args.half * sizeof(float), exec, args, entry_vector);
}

}  // namespace moeserve::cuda
