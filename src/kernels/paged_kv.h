// The page-table view of one layer's KV cache that attention kernels read and write.
// Memory is [num_blocks, block_size, entry_size] floats; a token at position p of a sequence
// lives in block block_table[p / block_size], slot p % block_size. An entry is
//   GQA: [K (num_kv_heads × head_dim) | V (num_kv_heads × head_dim)]
//   MLA: [latent c (kv_lora_rank) | rope key k_pe (qk_rope_head_dim)]
#pragma once

#include <cstdint>
#include <span>

namespace moeserve {

struct PagedKvLayer {
  float* data = nullptr;
  int num_blocks = 0;
  int block_size = 0;
  int entry_size = 0;

  float* entry(const int32_t* block_table, int position) const {
    const int32_t block = block_table[position / block_size];
    return data + (static_cast<int64_t>(block) * block_size + position % block_size) * entry_size;
  }
};

// One sequence's part of a batch: rows [query_begin, query_begin + num_query) of the batch are
// its newest tokens, at positions context_len - num_query ... context_len - 1; its block table
// covers all context_len positions.
struct SequenceView {
  int query_begin = 0;
  int num_query = 0;
  int context_len = 0;
  std::span<const int32_t> block_table;
};

}  // namespace moeserve
