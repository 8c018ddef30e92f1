// The multi-rank golden check shared by parallel_test and eplb_test: the fixture's five
// prompts spread over the DP replicas (prompt j on replica j % dp) and batched together, one
// prefill step with every position's logits (within 1e-4 of transformers' reference), then
// one decode step per greedy token (16, equal to the reference's greedy tokens). Replicas run
// unequal batches and, once one runs out of prompts, empty ones.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include "loader/checkpoint.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/rank_group.h"

namespace moeserve::testing {

constexpr double kParallelTolerance = 1e-4;
constexpr int kParallelPrompts = 5;
constexpr int kParallelGreedyTokens = 16;
constexpr int kParallelBlockSize = 16;

// One prompt's sequence on its replica: tokens so far and a block range of its own.
struct ParallelSeq {
  int prompt_idx = 0;
  std::vector<int32_t> tokens;
  int computed = 0;
  std::vector<int32_t> block_table;
  std::vector<int32_t> generated;
};

// Builds the group under test over the checkpoint, each DP replica with num_blocks KV blocks of
// kParallelBlockSize tokens (default: the CPU's ranks on threads, RankGroup::create).
using GroupFactory = std::function<Result<std::unique_ptr<RankGroup>>(
    const ModelConfig& config, const WeightSource& weights, const ParallelConfig& parallel, int num_blocks)>;

// `inspect` sees the group after the last step (e.g. its EPLB counters). dir: a model directory
// with its reference.safetensors.
inline void check_dir_against_reference(const std::string& dir, const ParallelConfig& parallel,
                                        const std::function<void(RankGroup&)>& inspect = {},
                                        const GroupFactory& make_group = {}) {
  const Reference reference(dir + "/reference.safetensors");
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  const int dp = parallel.data_parallel_size;

  // Prompts j go to replica j % dp; each sequence owns a contiguous range of
  // its replica's blocks.
  std::vector<std::vector<ParallelSeq>> replicas(dp);
  std::vector<int> blocks_used(dp, 0);
  for (int j = 0; j < kParallelPrompts; ++j) {
    ParallelSeq seq;
    seq.prompt_idx = j;
    seq.tokens = reference.ids("prompt_" + std::to_string(j));
    const int blocks =
        (static_cast<int>(seq.tokens.size()) + kParallelGreedyTokens + kParallelBlockSize - 1) / kParallelBlockSize;
    seq.block_table.resize(blocks);
    std::iota(seq.block_table.begin(), seq.block_table.end(), blocks_used[j % dp]);
    blocks_used[j % dp] += blocks;
    replicas[j % dp].push_back(std::move(seq));
  }
  const int num_blocks = *std::max_element(blocks_used.begin(), blocks_used.end());
  auto group = make_group ? make_group(*config, *checkpoint, parallel, num_blocks)
                          : RankGroup::create(*config, *checkpoint, parallel, ModelOptions{}, num_blocks,
                                              kParallelBlockSize);
  ASSERT_TRUE(group.ok()) << group.error().message;
  const int vocab = config->vocab_size;

  // Step 0 prefills every prompt with all logits; then one decode step per
  // greedy token. A replica whose sequences are all done runs an empty batch.
  for (int step = 0; step < kParallelGreedyTokens; ++step) {
    std::vector<std::vector<RunnerSeq>> batches(dp);
    for (int d = 0; d < dp; ++d) {
      for (ParallelSeq& seq : replicas[d]) {
        if (static_cast<int>(seq.generated.size()) == kParallelGreedyTokens) continue;
        const int num_new = static_cast<int>(seq.tokens.size()) - seq.computed;
        batches[d].push_back(RunnerSeq{.tokens = seq.tokens,
                                       .num_computed = seq.computed,
                                       .num_new = num_new,
                                       .samples = true,
                                       .all_logits = step == 0,
                                       .block_table = seq.block_table});
      }
    }
    const std::vector<Tensor> logits = (*group)->step(batches);
    for (int d = 0; d < dp; ++d) {
      int64_t row = 0;
      for (ParallelSeq& seq : replicas[d]) {
        if (static_cast<int>(seq.generated.size()) == kParallelGreedyTokens) continue;
        const int64_t rows = step == 0 ? static_cast<int64_t>(seq.tokens.size()) : 1;
        const float* seq_logits = logits[d].f32() + row * vocab;
        if (step == 0) {
          const TensorView expected = reference.tensor("logits_" + std::to_string(seq.prompt_idx));
          ASSERT_EQ(expected.dim(0), rows);
          EXPECT_LT(max_row_relative_error(seq_logits, expected.as<float>(), rows, vocab), kParallelTolerance)
              << "prompt " << seq.prompt_idx;
        }
        seq.computed = static_cast<int>(seq.tokens.size());
        const int32_t token = argmax(seq_logits + (rows - 1) * vocab, vocab);
        seq.generated.push_back(token);
        seq.tokens.push_back(token);
        row += rows;
      }
      ASSERT_EQ(row, logits[d].shape()[0]);
    }
  }
  for (const auto& replica : replicas) {
    for (const ParallelSeq& seq : replica) {
      EXPECT_EQ(seq.generated, reference.ids("greedy_" + std::to_string(seq.prompt_idx)))
          << "prompt " << seq.prompt_idx;
    }
  }
  if (inspect) inspect(**group);
}

// The same for fixture `model`.
inline void check_layout_against_reference(const std::string& model, const ParallelConfig& parallel,
                                           const std::function<void(RankGroup&)>& inspect = {}) {
  check_dir_against_reference(fixture_model(model), parallel, inspect);
}

}  // namespace moeserve::testing
