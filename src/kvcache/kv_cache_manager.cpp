#include "kvcache/kv_cache_manager.h"

#include "base/check.h"

namespace moeserve {

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : pool_(num_blocks), block_size_(block_size), prefix_caching_(enable_prefix_caching) {
  MS_CHECK(block_size > 0);
}

PrefixHit KvCacheManager::find_prefix(std::span<const int32_t> tokens) {
  PrefixHit hit;
  if (!prefix_caching_ || tokens.empty()) return hit;
  prefix_queries_ += static_cast<int64_t>(tokens.size());
  const int max_blocks = (static_cast<int>(tokens.size()) - 1) / block_size_;
  uint64_t hash = 0;
  for (int block_idx = 0; block_idx < max_blocks; ++block_idx) {
    const int32_t* block_tokens = tokens.data() + static_cast<size_t>(block_idx) * block_size_;
    hash = chain_block_hash(hash, block_tokens, block_size_);
    const auto block = pool_.lookup(hash, block_tokens, block_size_);
    if (!block) break;
    hit.blocks.push_back(*block);
  }
  hit.num_tokens = static_cast<int>(hit.blocks.size()) * block_size_;
  prefix_hits_ += hit.num_tokens;
  return hit;
}

bool KvCacheManager::allocate(SeqId seq, int total_tokens, const PrefixHit* prefix) {
  auto it = seqs_.find(seq);
  const bool is_new = it == seqs_.end();
  const int have = is_new ? 0 : static_cast<int>(it->second.blocks.size());
  const int adopted = is_new && prefix != nullptr ? static_cast<int>(prefix->blocks.size()) : 0;
  const int needed = std::max(0, blocks_for(total_tokens) - have - adopted);
  int adopted_from_free = 0;
  for (int i = 0; i < adopted; ++i) adopted_from_free += pool_.ref_count(prefix->blocks[i]) == 0 ? 1 : 0;
  if (needed + adopted_from_free > pool_.num_free()) return false;

  SeqBlocks& entry = seqs_[seq];
  for (int i = 0; i < adopted; ++i) pool_.touch(prefix->blocks[i]);
  if (adopted > 0) {
    entry.blocks = prefix->blocks;
    entry.num_hashed = adopted;
    entry.chain_pending = true;
  }
  auto fresh = pool_.allocate(needed);
  MS_CHECK(fresh.has_value());
  entry.blocks.insert(entry.blocks.end(), fresh->begin(), fresh->end());
  return true;
}

void KvCacheManager::commit_computed(SeqId seq, std::span<const int32_t> tokens, int num_computed) {
  if (!prefix_caching_) return;
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  SeqBlocks& entry = it->second;
  const int full_blocks = std::min(num_computed / block_size_, static_cast<int>(entry.blocks.size()));
  // Adopted blocks were hashed by whoever computed them; recompute the chain up to them once.
  if (entry.chain_pending) {
    entry.chain_pending = false;
    for (int block_idx = 0; block_idx < entry.num_hashed; ++block_idx) {
      entry.last_hash = chain_block_hash(entry.last_hash, tokens.data() + block_idx * block_size_, block_size_);
    }
  }
  for (int block_idx = entry.num_hashed; block_idx < full_blocks; ++block_idx) {
    const int32_t* block_tokens = tokens.data() + static_cast<size_t>(block_idx) * block_size_;
    entry.last_hash = chain_block_hash(entry.last_hash, block_tokens, block_size_);
    pool_.cache_full_block(entry.blocks[block_idx], entry.last_hash, block_tokens, block_size_);
    entry.num_hashed = block_idx + 1;
  }
}

void KvCacheManager::free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Release tail blocks first so they are reused before the shared prefix blocks.
  for (auto block = it->second.blocks.rbegin(); block != it->second.blocks.rend(); ++block) pool_.release(*block);
  seqs_.erase(it);
}

std::span<const BlockId> KvCacheManager::block_table(SeqId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return {};
  return it->second.blocks;
}

}  // namespace moeserve
