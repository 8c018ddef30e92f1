// KvCacheManager: which KV blocks each sequence owns, and prefix caching on top of BlockPool.
// A sequence's block table covers its first block_table.size() × block_size positions. Full
// blocks whose KV has been computed are registered under their chained hash, so a later
// sequence with the same prefix adopts them (ref-counted) instead of recomputing. The narrow
// interface the scheduler uses: find_prefix, allocate, commit_computed, free.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/block_pool.h"

namespace moeserve {

using SeqId = uint64_t;

struct PrefixHit {
  std::vector<BlockId> blocks;
  int num_tokens = 0;  // blocks.size() × block_size
};

class KvCacheManager {
 public:
  KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching);

  int block_size() const { return block_size_; }
  int num_blocks() const { return pool_.num_blocks(); }
  double usage() const { return pool_.usage(); }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks needed to hold `num_tokens` positions.
  int blocks_for(int num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // The longest cached prefix of `tokens` made of full blocks, never covering the last token
  // (its logits must be computed). Counts toward the prefix-cache query/hit statistics.
  PrefixHit find_prefix(std::span<const int32_t> tokens);
  // Grows `seq`'s table to cover `total_tokens` positions; a new sequence first adopts `prefix`.
  // Returns false, changing nothing, when there are not enough free blocks.
  bool allocate(SeqId seq, int total_tokens, const PrefixHit* prefix = nullptr);
  // Registers the full blocks among tokens [0, num_computed) of `seq` for prefix sharing.
  void commit_computed(SeqId seq, std::span<const int32_t> tokens, int num_computed);
  // Releases every block of `seq` (a no-op for unknown sequences).
  void free(SeqId seq);
  std::span<const BlockId> block_table(SeqId seq) const;

  int64_t prefix_queries() const { return prefix_queries_; }  // tokens looked up
  int64_t prefix_hits() const { return prefix_hits_; }        // tokens found cached

 private:
  struct SeqBlocks {
    std::vector<BlockId> blocks;
    int num_hashed = 0;     // leading blocks registered in the pool
    uint64_t last_hash = 0;  // chained hash of block num_hashed - 1
    bool chain_pending = false;  // adopted blocks whose chain hash is not yet recomputed
  };

  BlockPool pool_;
  int block_size_;
  bool prefix_caching_;
  std::unordered_map<SeqId, SeqBlocks> seqs_;
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
};

}  // namespace moeserve
