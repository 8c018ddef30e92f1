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

// The keys rows [first_row, first_row + rows) of one sequence attend to, together: cache
// positions [first, last] (first: the sliding window's start for the first row; last: the last
// row's position) through its block table, and where kv head's key and value sit in an entry.
struct KeyRange {
  int first;
  int last;
  const int32_t* table;
  int key_offset;
  int value_offset;
};

__device__ __forceinline__ KeyRange key_range(const AttentionArgs& args, int first_row, int rows, int kv_head) {
  const int first_position = args.positions[first_row];
  return KeyRange{args.sliding_window > 0 ? max(0, first_position - args.sliding_window + 1) : 0,
                  args.positions[first_row + rows - 1], args.block_tables + args.table_offsets[first_row],
                  args.key_offset + kv_head * args.kv_head_stride, args.value_offset + kv_head * args.kv_head_stride};
}

}  // namespace moeserve::cuda
