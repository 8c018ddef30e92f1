// KV cache bookkeeping: block allocation and release, prefix sharing by chained hashes (with
// token comparison, so equal hashes of different tokens never share), LRU reuse of freed cached
// blocks, the never-the-last-token rule, and all-or-nothing allocation.
#include <gtest/gtest.h>

#include <numeric>

#include "kvcache/kv_cache_manager.h"

namespace moeserve {
namespace {

std::vector<int32_t> tokens(int count, int start = 100) {
  std::vector<int32_t> ids(count);
  std::iota(ids.begin(), ids.end(), start);
  return ids;
}

TEST(BlockPool, AllocateReleaseAndLruReuse) {
  BlockPool pool(4);
  auto first = pool.allocate(3);
  ASSERT_TRUE(first);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_FALSE(pool.allocate(2));  // all-or-nothing
  EXPECT_EQ(pool.num_free(), 1);
  const std::vector<int32_t> ids = tokens(4);
  pool.cache_full_block((*first)[0], 7, ids.data(), 4);
  for (BlockId block : *first) pool.release(block);
  EXPECT_EQ(pool.num_free(), 4);
  // The cached block survives until the free blocks ahead of it are used.
  EXPECT_TRUE(pool.lookup(7, ids.data(), 4));
  auto again = pool.allocate(1);  // the never-used block 3 comes first
  ASSERT_TRUE(again);
  EXPECT_TRUE(pool.lookup(7, ids.data(), 4));
  auto more = pool.allocate(1);   // then block 0, which evicts its cached content
  EXPECT_EQ((*more)[0], (*first)[0]);
  EXPECT_FALSE(pool.lookup(7, ids.data(), 4));
}

TEST(BlockPool, EqualHashDifferentTokensIsAMiss) {
  BlockPool pool(2);
  auto block = pool.allocate(1);
  const std::vector<int32_t> a = tokens(4, 0), b = tokens(4, 50);
  pool.cache_full_block((*block)[0], 42, a.data(), 4);
  EXPECT_TRUE(pool.lookup(42, a.data(), 4));
  EXPECT_FALSE(pool.lookup(42, b.data(), 4));
}

TEST(KvCacheManager, SharesFullPrefixBlocksAndNeverTheLastToken) {
  KvCacheManager kv(16, 4, true);
  const std::vector<int32_t> prompt = tokens(10);
  EXPECT_EQ(kv.find_prefix(prompt).num_tokens, 0);
  ASSERT_TRUE(kv.allocate(1, 10));
  EXPECT_EQ(kv.block_table(1).size(), 3u);
  kv.commit_computed(1, prompt, 10);  // blocks 0-1 full, block 2 partial

  const PrefixHit hit = kv.find_prefix(prompt);
  EXPECT_EQ(hit.num_tokens, 8);
  ASSERT_TRUE(kv.allocate(2, 10, &hit));
  EXPECT_EQ(kv.block_table(2)[0], kv.block_table(1)[0]);
  EXPECT_EQ(kv.block_table(2)[1], kv.block_table(1)[1]);
  EXPECT_NE(kv.block_table(2)[2], kv.block_table(1)[2]);

  // A prompt of exactly 8 tokens may reuse only 1 block: its last token must be computed.
  const std::vector<int32_t> eight(prompt.begin(), prompt.begin() + 8);
  EXPECT_EQ(kv.find_prefix(eight).num_tokens, 4);
  EXPECT_GT(kv.prefix_hits(), 0);
  EXPECT_GT(kv.prefix_queries(), kv.prefix_hits());
}

TEST(KvCacheManager, DifferentEarlierTokensBreakTheChain) {
  KvCacheManager kv(16, 4, true);
  std::vector<int32_t> prompt = tokens(12);
  ASSERT_TRUE(kv.allocate(1, 12));
  kv.commit_computed(1, prompt, 12);
  std::vector<int32_t> other = prompt;
  other[1] = 999;  // same second block, different first block
  EXPECT_EQ(kv.find_prefix(other).num_tokens, 0);
}

TEST(KvCacheManager, FreedBlocksStayFindableAndRefCountsHold) {
  KvCacheManager kv(4, 4, true);
  const std::vector<int32_t> prompt = tokens(9);
  ASSERT_TRUE(kv.allocate(1, 9));
  kv.commit_computed(1, prompt, 9);
  kv.free(1);
  EXPECT_DOUBLE_EQ(kv.usage(), 0.0);
  const PrefixHit hit = kv.find_prefix(prompt);
  EXPECT_EQ(hit.num_tokens, 8);
  ASSERT_TRUE(kv.allocate(2, 9, &hit));
  EXPECT_EQ(kv.usage(), 0.75);
  // Only one block is left: a 2-block sequence cannot be admitted, and nothing changes.
  EXPECT_FALSE(kv.allocate(3, 8));
  EXPECT_EQ(kv.usage(), 0.75);
  kv.free(2);
  EXPECT_DOUBLE_EQ(kv.usage(), 0.0);
}

TEST(KvCacheManager, DisabledPrefixCachingNeverHits) {
  KvCacheManager kv(8, 4, false);
  const std::vector<int32_t> prompt = tokens(9);
  ASSERT_TRUE(kv.allocate(1, 9));
  kv.commit_computed(1, prompt, 9);
  EXPECT_EQ(kv.find_prefix(prompt).num_tokens, 0);
}

}  // namespace
}  // namespace moeserve
