// Reading the paged KV cache, shared by the attention kernels: the cache entry of a position
// through a sequence's block table, and the keys a run of query rows attends to.
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8.cuh"

namespace moeserve::cuda {

// A cache element: float32, or (--kv-cache-dtype fp8, AttentionArgs::cache_fp8) an e4m3 byte of the
// value divided by its ops::KvScales scale, as vLLM's fp8 KV cache stores it. The kernels that read or write the cache are
// templated on it (Kv = float or uint8_t); either way an entry is entry_size elements.
__device__ __forceinline__ float kv_load(const float* p) { return *p; }
__device__ __forceinline__ float kv_load(const uint8_t* p) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(*p, __NV_E4M3)));
}
// Four consecutive elements (16-byte aligned floats, 4-byte aligned bytes).
__device__ __forceinline__ float4 kv_load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 kv_load4(const uint8_t* p) {
  return fp8_e4m3x4_to_float4(*reinterpret_cast<const uint32_t*>(p));
}
// Writes: e4m3 rounds to nearest even and saturates at ±448, as the CPU's round_to_f8e4m3.
__device__ __forceinline__ void kv_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void kv_store(uint8_t* p, float v) {
  *p = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}
__device__ __forceinline__ void kv_store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void kv_store4(uint8_t* p, float4 v) {
  *reinterpret_cast<uint32_t*>(p) = float4_to_fp8_e4m3x4(v);
}

// The cache of a layer as Kv elements (AttentionArgs::cache holds either kind).
template <typename Kv, typename Cache>
__device__ __forceinline__ const Kv* kv_base(const Cache* cache) {
  return reinterpret_cast<const Kv*>(cache);
}

// Entry [entry_size] of cache position `position` of the sequence whose block table is `table`.
template <typename Kv>
__device__ __forceinline__ const Kv* cache_entry(const AttentionArgs& args, const int32_t* table, int position) {
  const int64_t block = table[position / args.block_size];
  return kv_base<Kv>(args.cache) + (block * args.block_size + position % args.block_size) * args.entry_size;
}

// The first key a query row at `position` sees: its sliding window's start, or its attention
// chunk's (Llama 4), 0 without either.
__device__ __forceinline__ int lowest_key(const AttentionArgs& args, int position) {
  int first = args.sliding_window > 0 ? max(0, position - args.sliding_window + 1) : 0;
  if (args.chunk_size > 0) first = max(first, position / args.chunk_size * args.chunk_size);
  return first;
}

// The score scale of a query row at `position`: args.scale, times Llama 4's attention
// temperature on its NoPE layers (temperature_floor > 0).
__device__ __forceinline__ float row_scale(const AttentionArgs& args, int position) {
  if (args.temperature_floor <= 0.0f) return args.scale;
  return args.scale *
         (log1pf(floorf((static_cast<float>(position) + 1.0f) / args.temperature_floor)) * args.temperature_scale +
          1.0f);
}

// Head h's sink logit (GPT-OSS), -inf without sinks.
__device__ __forceinline__ float sink_logit(const AttentionArgs& args, int head) {
  return args.sinks != nullptr ? args.sinks[head] : -INFINITY;
}

// The keys rows [first_row, first_row + rows) of one sequence attend to, together: cache
// positions [first, last] (first: the first row's lowest_key; last: the last row's position)
// through its block table, and where kv head's key and value sit in an entry.
struct KeyRange {
  int first;
  int last;
  const int32_t* table;
  int key_offset;
  int value_offset;
};

__device__ __forceinline__ KeyRange key_range(const AttentionArgs& args, int first_row, int rows, int kv_head) {
  const int first_position = args.positions[first_row];
  return KeyRange{lowest_key(args, first_position), args.positions[first_row + rows - 1],
                  args.block_tables + args.table_offsets[first_row], args.key_offset + kv_head * args.kv_head_stride,
                  args.value_offset + kv_head * args.kv_head_stride};
}

}  // namespace moeserve::cuda
