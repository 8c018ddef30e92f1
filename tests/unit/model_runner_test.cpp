// The one runner (runtime/model_runner.h) on the CPU device: a step cut into passes of at most
// max_num_batched_tokens rows — the cut falling inside prompts, a sequence's later rows attending
// to its earlier rows' K/V in the cache — gives the logits, the picked tokens (greedy and seeded
// sampling) and the routing counts of the same step run as one pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "reference_data.h"
#include "runtime/cpu_runner.h"
#include "runtime/loaded_model.h"
#include "runtime/model_runner.h"

namespace moeserve {
namespace {

const char* kModel = MOESERVE_MODELS_DIR "/kjv-mixtral-tiny";

struct StepResult {
  Tensor logits;
  std::vector<int32_t> tokens;
  ExpertLoad load;
};

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = load_model(kModel, LoadOptions{});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    loaded_ = std::move(*loaded);
  }

  std::unique_ptr<ModelRunner> runner(int max_num_batched_tokens, int max_logit_rows = 0) {
    ModelRunnerOptions options = cpu_runner_options(/*num_kv_blocks=*/16, /*block_size=*/16);
    options.max_num_batched_tokens = max_num_batched_tokens;
    options.max_logit_rows = max_logit_rows;
    auto runner = ModelRunner::create(std::make_unique<CpuDevice>(*loaded_.model, ExecContext{&pool_}), options);
    EXPECT_TRUE(runner.ok()) << runner.error().message;
    return std::move(runner.value());
  }

  static StepResult run(ModelRunner& runner, std::span<const RunnerSeq> seqs) {
    StepResult result;
    result.logits = runner.execute(seqs);
    result.tokens.assign(runner.picked_tokens().begin(), runner.picked_tokens().end());
    result.load = runner.expert_load();
    runner.reset_expert_load();
    return result;
  }

  // The step below run by `split` and by a runner of one pass give the same logits, tokens and
  // routing counts.
  void expect_passes_equal_one_pass(std::unique_ptr<ModelRunner> split);

  ThreadPool pool_{2};
  LoadedModel loaded_;
};

void ModelRunnerTest::expect_passes_equal_one_pass(std::unique_ptr<ModelRunner> split) {
  auto whole = runner(std::numeric_limits<int>::max());
  const int vocab = loaded_.model->config().vocab_size;
  // Three prompts (13, 9 with every row's logits, 3 tokens), then one decode step of the two
  // that sample: the second with a seeded top-p choice, which the runner picks.
  std::vector<int32_t> a{1, 400, 12, 77, 5, 900, 31, 8, 250, 64, 3, 17, 99};
  std::vector<int32_t> b{1, 60, 61, 62, 700, 12, 13, 14, 15};
  std::vector<int32_t> c{1, 1000, 42};
  const std::vector<BlockId> table_a{2, 5}, table_b{1}, table_c{7};
  TokenChoice sampled;
  sampled.params.temperature = 0.8f;
  sampled.params.top_p = 0.9f;
  sampled.uniform = 0.37;
  for (int step = 0; step < 2; ++step) {
    std::vector<RunnerSeq> seqs;
    if (step == 0) {
      seqs = {RunnerSeq{.tokens = a, .num_new = 13, .samples = true, .block_table = table_a},
              RunnerSeq{.tokens = b, .num_new = 9, .samples = true, .all_logits = true, .block_table = table_b},
              RunnerSeq{.tokens = c, .num_new = 3, .samples = true, .choice = &sampled, .block_table = table_c}};
    } else {
      seqs = {RunnerSeq{.tokens = a, .num_computed = 13, .num_new = 1, .samples = true, .block_table = table_a},
              RunnerSeq{.tokens = c,
                        .num_computed = 3,
                        .num_new = 1,
                        .samples = true,
                        .choice = &sampled,
                        .block_table = table_c}};
    }
    const StepResult one = run(*whole, seqs);
    const StepResult cut = run(*split, seqs);
    const int rows = logit_rows(seqs);
    ASSERT_EQ(one.logits.shape()[0], rows);
    ASSERT_EQ(cut.logits.shape()[0], rows);
    ASSERT_EQ(one.tokens.size(), size_t(rows));
    EXPECT_EQ(cut.tokens, one.tokens) << "step " << step;
    // The choice's row is the last one (its sequence's only row); the others come back, within
    // float32 rounding of the other pass shapes (as the chunked-prefill tests).
    EXPECT_LT(testing::max_row_relative_error(cut.logits.f32(), one.logits.f32(), rows - 1, vocab), 1e-5)
        << "step " << step;
    EXPECT_EQ(cut.load.counts, one.load.counts) << "step " << step;
    int64_t routed = 0;
    for (const int64_t n : one.load.counts) routed += n;
    const MoeConfig& moe = *loaded_.model->config().moe;
    EXPECT_EQ(routed, int64_t(step == 0 ? 25 : 2) * moe.top_k * loaded_.model->config().num_layers);
    a.push_back(one.tokens[0]);
    c.push_back(one.tokens.back());
  }
}

TEST_F(ModelRunnerTest, PassesOfAFewRowsEqualOnePass) { expect_passes_equal_one_pass(runner(5)); }

// A cap on the logit rows of a pass (a server's --max-num-seqs): a sequence wanting every row's
// logits is cut at the cap, a sampled row that finds the pass's rows taken starts the next pass.
TEST_F(ModelRunnerTest, PassesOfAFewLogitRowsEqualOnePass) {
  expect_passes_equal_one_pass(runner(std::numeric_limits<int>::max(), /*max_logit_rows=*/2));
  expect_passes_equal_one_pass(runner(5, /*max_logit_rows=*/1));
}

// The profile run's step: every row's logits in one sequence, or under a cap one long sequence
// and cap - 1 of one row, all sampling, in blocks of their own.
TEST(ProfileStep, TheRowsAndLogitRowsOfTheLargestStep) {
  const ProfileStep all = profile_step(100, 100, 16);
  ASSERT_EQ(all.seqs.size(), 1u);
  EXPECT_TRUE(all.seqs[0].all_logits);
  EXPECT_EQ(all.seqs[0].num_new, 100);
  EXPECT_EQ(all.blocks, 7);
  ProfileStep capped = profile_step(100, 8, 16);
  ASSERT_EQ(capped.seqs.size(), 8u);
  EXPECT_EQ(logit_rows(capped.seqs), 8);
  int rows = 0;
  std::vector<BlockId> blocks;
  for (const RunnerSeq& seq : capped.seqs) {
    EXPECT_TRUE(seq.samples && !seq.all_logits);
    EXPECT_EQ(seq.tokens.size(), size_t(seq.num_new));
    EXPECT_GE(int(seq.block_table.size()) * 16, seq.num_new);
    rows += seq.num_new;
    blocks.insert(blocks.end(), seq.block_table.begin(), seq.block_table.end());
  }
  EXPECT_EQ(rows, 100);
  EXPECT_EQ(capped.seqs[0].num_new, 93);
  std::sort(blocks.begin(), blocks.end());
  EXPECT_EQ(std::adjacent_find(blocks.begin(), blocks.end()), blocks.end());  // none shared
  EXPECT_EQ(int(blocks.size()), capped.blocks);
  EXPECT_EQ(capped.blocks, 6 + 7);
  // Moved, its spans still read its own vectors.
  const ProfileStep moved = std::move(capped);
  EXPECT_EQ(moved.seqs[0].block_table.data(), moved.tables[0].data());
}

}  // namespace
}  // namespace moeserve
