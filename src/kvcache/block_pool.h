// BlockPool: bookkeeping for the KV cache's fixed-size blocks (the memory is KvMemory's).
// Invariants: every block is either referenced (ref_count > 0, not in the free queue) or free
// (ref_count == 0, in the free queue exactly once). A free block may still hold a cached full
// block of tokens (it has a hash and is findable by prefix lookup) until it is reused; blocks are
// reused least-recently-freed first, so cached prefixes survive as long as possible.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

namespace moeserve {

using BlockId = int32_t;

// Identity of a full block: a hash chained over every token of the sequence up to and including
// this block, plus the block's own tokens (compared on lookup, so a hash collision can never
// return the wrong KV).
struct BlockKey {
  uint64_t hash = 0;
  std::vector<int32_t> tokens;
};

// Chains `parent` (0 for the first block) with one block's tokens.
uint64_t chain_block_hash(uint64_t parent, const int32_t* tokens, int count);

class BlockPool {
 public:
  explicit BlockPool(int num_blocks);

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int num_free() const { return static_cast<int>(free_queue_.size()); }
  double usage() const { return 1.0 - static_cast<double>(num_free()) / num_blocks(); }

  // Takes `count` free blocks (evicting whatever cached content they held), each with
  // ref_count 1; nullopt (and no change) when fewer are free.
  std::optional<std::vector<BlockId>> allocate(int count);
  // A cached full block with exactly this key, or nullopt.
  std::optional<BlockId> lookup(uint64_t hash, const int32_t* tokens, int count) const;
  // Adds a reference to a block found by lookup (taking it out of the free queue if needed).
  void touch(BlockId block);
  // Drops one reference; at zero the block joins the back of the free queue (kept cached).
  void release(BlockId block);
  // Registers a just-filled block under its key so later requests can share it. A key already
  // cached by another block is left as it is.
  void cache_full_block(BlockId block, uint64_t hash, const int32_t* tokens, int count);

  int ref_count(BlockId block) const { return blocks_[block].ref_count; }

 private:
  struct Block {
    int ref_count = 0;
    std::optional<BlockKey> key;
    std::list<BlockId>::iterator free_position;
  };
  void evict_key(BlockId block);

  std::vector<Block> blocks_;
  std::list<BlockId> free_queue_;  // front = next to reuse
  std::unordered_multimap<uint64_t, BlockId> cached_;
};

}  // namespace moeserve
