#include "kvcache/block_pool.h"

#include <algorithm>

#include "base/check.h"

namespace moeserve {

uint64_t chain_block_hash(uint64_t parent, const int32_t* tokens, int count) {
  // FNV-1a over the parent hash and the tokens, then a final avalanche (splitmix64).
  uint64_t hash = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t value) {
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= (value >> (8 * byte)) & 0xffu;
      hash *= 1099511628211ull;
    }
  };
  mix(static_cast<uint64_t>(count));
  for (int i = 0; i < count; ++i) mix(static_cast<uint32_t>(tokens[i]));
  hash ^= hash >> 30;
  hash *= 0xbf58476d1ce4e5b9ull;
  hash ^= hash >> 27;
  hash *= 0x94d049bb133111ebull;
  return hash ^ (hash >> 31);
}

BlockPool::BlockPool(int num_blocks) : blocks_(num_blocks) {
  MS_CHECK(num_blocks > 0);
  for (BlockId block = 0; block < num_blocks; ++block) {
    blocks_[block].free_position = free_queue_.insert(free_queue_.end(), block);
  }
}

std::optional<std::vector<BlockId>> BlockPool::allocate(int count) {
  if (count > num_free()) return std::nullopt;
  std::vector<BlockId> taken;
  taken.reserve(count);
  for (int i = 0; i < count; ++i) {
    const BlockId block = free_queue_.front();
    free_queue_.pop_front();
    evict_key(block);
    blocks_[block].ref_count = 1;
    taken.push_back(block);
  }
  return taken;
}

std::optional<BlockId> BlockPool::lookup(uint64_t hash, const int32_t* tokens, int count) const {
  const auto [begin, end] = cached_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    const BlockKey& key = *blocks_[it->second].key;
    if (static_cast<int>(key.tokens.size()) == count && std::equal(tokens, tokens + count, key.tokens.begin())) {
      return it->second;
    }
  }
  return std::nullopt;
}

void BlockPool::touch(BlockId block) {
  Block& entry = blocks_[block];
  if (entry.ref_count == 0) free_queue_.erase(entry.free_position);
  ++entry.ref_count;
}

void BlockPool::release(BlockId block) {
  Block& entry = blocks_[block];
  MS_CHECK(entry.ref_count > 0);
  if (--entry.ref_count == 0) entry.free_position = free_queue_.insert(free_queue_.end(), block);
}

void BlockPool::cache_full_block(BlockId block, uint64_t hash, const int32_t* tokens, int count) {
  Block& entry = blocks_[block];
  if (entry.key) return;
  if (lookup(hash, tokens, count)) return;
  entry.key = BlockKey{hash, std::vector<int32_t>(tokens, tokens + count)};
  cached_.emplace(hash, block);
}

void BlockPool::evict_key(BlockId block) {
  Block& entry = blocks_[block];
  if (!entry.key) return;
  const auto [begin, end] = cached_.equal_range(entry.key->hash);
  for (auto it = begin; it != end; ++it) {
    if (it->second == block) {
      cached_.erase(it);
      break;
    }
  }
  entry.key.reset();
}

}  // namespace moeserve
