// Multi-rank layouts on the CPU backend (threads + the in-process
// communicator): for every fixture model, TP 2, DP 2 with EP, TP 2 × DP 2 with
// EP (both all-to-all backends, both placements), TP 2 without EP and DP 2
// without EP give logits within 1e-4 of transformers' reference at every prompt
// position and the same 16 greedy tokens as the reference (which one rank
// reproduces: logits_test). Prompts are spread over the DP replicas and batched
// together, so replicas run unequal batches and, once one runs out of prompts,
// empty ones.
#include <gtest/gtest.h>

#include <numeric>

#include "loader/checkpoint.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/rank_group.h"

namespace moeserve {
namespace {

using testing::Reference;

constexpr double kTolerance = 1e-4;
constexpr int kNumPrompts = 5;
constexpr int kGreedyTokens = 16;
constexpr int kBlockSize = 16;

struct Layout {
  std::string name;
  ParallelConfig parallel;
};

struct Case {
  std::string model;
  Layout layout;
};

void PrintTo(const Case &c, std::ostream *os) { *os << c.model << " " << c.layout.name; }

std::string case_name(const ::testing::TestParamInfo<Case> &info) {
  std::string name = info.param.model + "_" + info.param.layout.name;
  for (char &c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

// One prompt's sequence on its replica: tokens so far and a block range of its
// own.
struct Seq {
  int prompt_idx = 0;
  std::vector<int32_t> tokens;
  int computed = 0;
  std::vector<int32_t> block_table;
  std::vector<int32_t> generated;
};

class ParallelGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParallelGoldenTest, LogitsAndGreedyTokensMatchTheReference) {
  const Case &param = GetParam();
  const std::string dir = testing::fixture_model(param.model);
  const Reference reference(dir + "/reference.safetensors");
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  const ParallelConfig &parallel = param.layout.parallel;
  const int dp = parallel.data_parallel_size;

  // Prompts j go to replica j % dp; each sequence owns a contiguous range of
  // its replica's blocks.
  std::vector<std::vector<Seq>> replicas(dp);
  std::vector<int> blocks_used(dp, 0);
  for (int j = 0; j < kNumPrompts; ++j) {
    Seq seq;
    seq.prompt_idx = j;
    seq.tokens = reference.ids("prompt_" + std::to_string(j));
    const int blocks = (static_cast<int>(seq.tokens.size()) + kGreedyTokens + kBlockSize - 1) / kBlockSize;
    seq.block_table.resize(blocks);
    std::iota(seq.block_table.begin(), seq.block_table.end(), blocks_used[j % dp]);
    blocks_used[j % dp] += blocks;
    replicas[j % dp].push_back(std::move(seq));
  }
  const int num_blocks = *std::max_element(blocks_used.begin(), blocks_used.end());
  auto group = RankGroup::create(*config, *checkpoint, parallel, ModelOptions{}, num_blocks, kBlockSize);
  ASSERT_TRUE(group.ok()) << group.error().message;
  const int vocab = config->vocab_size;

  // Step 0 prefills every prompt with all logits; then one decode step per
  // greedy token. A replica whose sequences are all done runs an empty batch.
  for (int step = 0; step < kGreedyTokens; ++step) {
    std::vector<std::vector<RunnerSeq>> batches(dp);
    for (int d = 0; d < dp; ++d) {
      for (Seq &seq : replicas[d]) {
        if (static_cast<int>(seq.generated.size()) == kGreedyTokens) continue;
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
      for (Seq &seq : replicas[d]) {
        if (static_cast<int>(seq.generated.size()) == kGreedyTokens) continue;
        const int64_t rows = step == 0 ? static_cast<int64_t>(seq.tokens.size()) : 1;
        const float *seq_logits = logits[d].f32() + row * vocab;
        if (step == 0) {
          const TensorView expected = reference.tensor("logits_" + std::to_string(seq.prompt_idx));
          ASSERT_EQ(expected.dim(0), rows);
          EXPECT_LT(testing::max_row_relative_error(seq_logits, expected.as<float>(), rows, vocab), kTolerance)
              << "prompt " << seq.prompt_idx;
        }
        seq.computed = static_cast<int>(seq.tokens.size());
        const int32_t token = testing::argmax(seq_logits + (rows - 1) * vocab, vocab);
        seq.generated.push_back(token);
        seq.tokens.push_back(token);
        row += rows;
      }
      ASSERT_EQ(row, logits[d].shape()[0]);
    }
  }
  for (const auto &replica : replicas) {
    for (const Seq &seq : replica) {
      EXPECT_EQ(seq.generated, reference.ids("greedy_" + std::to_string(seq.prompt_idx)))
          << "prompt " << seq.prompt_idx;
    }
  }
}

ParallelConfig layout(int tp, int dp, bool ep, All2AllBackend backend = All2AllBackend::kAllgatherReducescatter,
                      ExpertPlacement placement = ExpertPlacement::kLinear) {
  return ParallelConfig{.tensor_parallel_size = tp,
                        .data_parallel_size = dp,
                        .enable_expert_parallel = ep,
                        .all2all = backend,
                        .placement = placement};
}

std::vector<Case> all_cases() {
  const std::vector<Layout> layouts = {
      {"tp2", layout(2, 1, false)},
      {"tp4", layout(4, 1, false)},  // GQA models: fewer KV heads than ranks, so
                                     // KV heads are replicated
      {"dp2", layout(1, 2, false)},
      {"dp2_ep", layout(1, 2, true)},
      {"tp2_ep", layout(2, 1, true)},
      {"tp2_dp2_ep", layout(2, 2, true)},
      {"dp2_ep_alltoall", layout(1, 2, true, All2AllBackend::kAlltoall)},
      {"tp2_dp2_ep_alltoall_round_robin", layout(2, 2, true, All2AllBackend::kAlltoall, ExpertPlacement::kRoundRobin)},
  };
  std::vector<Case> cases;
  for (const char *model :
       {"tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2", "tiny-deepseek_v3"}) {
    for (const Layout &l : layouts) cases.push_back(Case{model, l});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ParallelGoldenTest, ::testing::ValuesIn(all_cases()), case_name);

// Layouts the model cannot be split into are refused with the reason.
TEST(ParallelLayoutTest, InvalidShapesAreRefusedWithTheReason) {
  auto config = load_model_config(testing::fixture_model("tiny-mixtral"));  // 4 heads, 2 KV heads, 8 experts
  ASSERT_TRUE(config.ok());
  auto checkpoint = Checkpoint::open(testing::fixture_model("tiny-mixtral"));
  ASSERT_TRUE(checkpoint.ok());
  auto refusal = [&](const ParallelConfig &parallel) {
    auto group = RankGroup::create(*config, *checkpoint, parallel, ModelOptions{}, 4, kBlockSize);
    return group.ok() ? std::string() : group.error().message;
  };
  EXPECT_NE(refusal(layout(3, 1, false))
                .find("number of attention heads (4) is not divisible by the "
                      "tensor-parallel "
                      "size 3"),
            std::string::npos)
      << refusal(layout(3, 1, false));
  EXPECT_NE(refusal(layout(1, 3, true))
                .find("experts (8) plus redundant experts (0) is not divisible by the "
                      "expert-parallel size 3"),
            std::string::npos)
      << refusal(layout(1, 3, true));
  ParallelConfig redundant = layout(1, 2, true);
  redundant.num_redundant_experts = 1;
  EXPECT_NE(refusal(redundant).find("plus redundant experts (1) is not divisible"), std::string::npos);
  EXPECT_EQ(refusal(layout(2, 2, true)), "");
}

}  // namespace
}  // namespace moeserve
