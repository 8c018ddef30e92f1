// Scheduler policy with no model: the token budget, chunked prefill behind running decodes,
// max_num_seqs, prefix hits, preemption by recompute when blocks run out (and the preempted
// sequence's recovery), and removal at any moment freeing every block.
#include <gtest/gtest.h>

#include <chrono>
#include <numeric>

#include "scheduler/scheduler.h"

namespace moeserve {
namespace {

std::vector<int32_t> prompt(int count, int start = 1) {
  std::vector<int32_t> ids(count);
  std::iota(ids.begin(), ids.end(), start);
  return ids;
}

// Runs a step as the engine would: complete it, then append a token for each sampler.
void finish_step(Scheduler& scheduler, const StepPlan& plan, int32_t token = 7) {
  scheduler.complete_step(plan);
  for (const ScheduledSeq& seq : plan.seqs) {
    if (seq.samples) scheduler.append_token(seq.id, token);
  }
}

TEST(Scheduler, ChunkedPrefillRespectsTheBudgetAndDecodesGoFirst) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 10, .max_model_len = 256}, kv);
  scheduler.add(1, prompt(6));
  StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.seqs.size(), 1u);
  EXPECT_EQ(plan.seqs[0].num_new, 6);
  EXPECT_TRUE(plan.seqs[0].samples);
  finish_step(scheduler, plan);

  scheduler.add(2, prompt(25, 50));
  plan = scheduler.schedule();  // seq 1 decodes (1 token), seq 2 gets the other 9
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[0].id, 1u);
  EXPECT_EQ(plan.seqs[0].num_new, 1);
  EXPECT_EQ(plan.seqs[1].num_new, 9);
  EXPECT_FALSE(plan.seqs[1].samples);
  EXPECT_EQ(plan.num_tokens, 10);
  finish_step(scheduler, plan);

  int prefill_steps = 1;
  while (true) {
    plan = scheduler.schedule();
    EXPECT_LE(plan.num_tokens, 10);
    const ScheduledSeq& second = plan.seqs.back();
    ASSERT_EQ(second.id, 2u);
    ++prefill_steps;
    finish_step(scheduler, plan);
    if (second.samples) break;
  }
  EXPECT_EQ(prefill_steps, 3);  // 9 + 9 + 7 prompt tokens
  EXPECT_EQ(scheduler.find(2)->num_computed, 25);
}

TEST(Scheduler, MaxNumSeqsBoundsTheRunningSet) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 2, .max_num_batched_tokens = 100, .max_model_len = 256}, kv);
  for (SeqId id = 1; id <= 3; ++id) scheduler.add(id, prompt(3));
  const StepPlan plan = scheduler.schedule();
  EXPECT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(scheduler.num_running(), 2);
  EXPECT_EQ(scheduler.num_waiting(), 1);
}

TEST(Scheduler, PrefixHitSkipsCachedTokens) {
  KvCacheManager kv(64, 4, true);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 100, .max_model_len = 256}, kv);
  scheduler.add(1, prompt(13));
  StepPlan plan = scheduler.schedule();
  finish_step(scheduler, plan);
  scheduler.add(2, prompt(13));
  plan = scheduler.schedule();
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[1].num_computed, 12);
  EXPECT_EQ(plan.seqs[1].num_new, 1);
  EXPECT_EQ(scheduler.find(2)->num_cached_prompt_tokens, 12);
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOutAndRecomputesLater) {
  KvCacheManager kv(4, 4, false);  // 16 token slots in all
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 100, .max_model_len = 64}, kv);
  scheduler.add(1, prompt(7));
  scheduler.add(2, prompt(7, 30));
  StepPlan plan = scheduler.schedule();
  ASSERT_EQ(plan.seqs.size(), 2u);  // 2 blocks each
  finish_step(scheduler, plan);     // 8 tokens each, 7 computed
  plan = scheduler.schedule();      // computing the 8th still fits in 2 blocks each
  EXPECT_TRUE(plan.preempted.empty());
  finish_step(scheduler, plan);     // 9 tokens each, 8 computed
  plan = scheduler.schedule();      // seq 1 needs a third block: seq 2 is preempted
  ASSERT_EQ(plan.preempted, std::vector<SeqId>{2});
  ASSERT_EQ(plan.seqs.size(), 1u);
  EXPECT_EQ(plan.seqs[0].id, 1u);
  EXPECT_EQ(scheduler.num_preemptions(), 1);
  EXPECT_EQ(scheduler.find(2)->num_computed, 0);
  EXPECT_EQ(scheduler.find(2)->num_tokens(), 9);  // keeps its generated tokens
  finish_step(scheduler, plan);
  scheduler.remove(1);  // seq 1 finishes; seq 2 comes back and recomputes all 9 tokens
  plan = scheduler.schedule();
  ASSERT_EQ(plan.seqs.size(), 1u);
  EXPECT_EQ(plan.seqs[0].id, 2u);
  EXPECT_EQ(plan.seqs[0].num_computed, 0);
  EXPECT_EQ(plan.seqs[0].num_new, 9);
  EXPECT_TRUE(plan.seqs[0].samples);
}

TEST(Scheduler, RemoveFreesBlocksAnywhere) {
  KvCacheManager kv(8, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 100, .max_model_len = 64}, kv);
  scheduler.add(1, prompt(9));
  scheduler.add(2, prompt(5));
  const StepPlan plan = scheduler.schedule();
  EXPECT_GT(kv.usage(), 0.0);
  scheduler.remove(1);
  scheduler.complete_step(plan);  // a step that ran while seq 1 was removed
  scheduler.remove(2);
  scheduler.remove(3);  // unknown: no-op
  EXPECT_DOUBLE_EQ(kv.usage(), 0.0);
  EXPECT_FALSE(scheduler.has_work());
}

// The engine's abort of a whole request (1,000 prompts x n=128) removes its sequences in one
// call: from the waiting queue and the running set alike, blocks freed, the others untouched in
// their order, ids unknown or repeated ignored; 128,000 waiting sequences leave at once.
TEST(Scheduler, RemovingManyAtOnceLeavesTheRestInOrder) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 2, .max_num_batched_tokens = 64, .max_model_len = 256}, kv);
  for (SeqId id = 1; id <= 6; ++id) scheduler.add(id, prompt(5, int(id) * 10));
  StepPlan plan = scheduler.schedule();  // 1 and 2 run, 3..6 wait
  ASSERT_EQ(plan.seqs.size(), 2u);
  finish_step(scheduler, plan);
  EXPECT_EQ(scheduler.num_running(), 2);
  EXPECT_EQ(scheduler.num_waiting(), 4);
  const std::vector<SeqId> gone = {2, 4, 4, 99};
  scheduler.remove(gone);
  EXPECT_EQ(scheduler.find(2), nullptr);
  EXPECT_EQ(scheduler.find(4), nullptr);
  EXPECT_EQ(scheduler.num_running(), 1);
  EXPECT_EQ(scheduler.num_waiting(), 3);
  plan = scheduler.schedule();  // 1 decodes, 3 is next in line (then 5, 6)
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[0].id, 1u);
  EXPECT_EQ(plan.seqs[1].id, 3u);
  finish_step(scheduler, plan);
  const std::vector<SeqId> rest = {1, 3, 5, 6};
  scheduler.remove(rest);
  EXPECT_FALSE(scheduler.has_work());
  EXPECT_EQ(kv.usage(), 0.0);

  KvCacheManager big_kv(64, 4, false);
  Scheduler big({.max_num_seqs = 256, .max_num_batched_tokens = 2048, .max_model_len = 256}, big_kv);
  std::vector<SeqId> all;
  for (SeqId id = 1; id <= 128000; ++id) {
    big.add(id, prompt(4));
    all.push_back(id);
  }
  EXPECT_EQ(big.num_waiting(), 128000);
  const auto start = std::chrono::steady_clock::now();
  big.remove(all);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(big.has_work());
  EXPECT_LT(seconds, 2.0);  // one scan each removal took ~17 s (quadratic)
}

}  // namespace
}  // namespace moeserve
