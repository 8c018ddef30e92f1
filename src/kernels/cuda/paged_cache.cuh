// Reading the paged KV cache, shared by the attention kernels: the cache entry of a position
// through a sequence's block table, and the keys a run of query rows attends to.
#pragma once

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

// Entry [entry_size] float32 of cache position `position` of the sequence whose block table is `table`.
__device__ __forceinline__ const float* cache_entry(const AttentionArgs& args, const int32_t* table, int position) {
  const int64_t block = table[position / args.block_size];
  return args.cache + (block * args.block_size + position % args.block_size) * args.entry_size;
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
