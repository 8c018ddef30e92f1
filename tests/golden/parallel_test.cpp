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

#include "parallel_golden.h"

namespace moeserve {
namespace {

constexpr int kBlockSize = 16;

struct Layout {
  std::string name;
  ParallelConfig parallel;
};

struct Case {
  std::string model;
  Layout layout;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " " << c.layout.name; }

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.model + "_" + info.param.layout.name;
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

// One prompt's sequence on its replica: tokens so far and a block range of its
// own.
class ParallelGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParallelGoldenTest, LogitsAndGreedyTokensMatchTheReference) {
  testing::check_layout_against_reference(GetParam().model, GetParam().layout.parallel);
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
  for (const char* model :
       {"tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2", "tiny-deepseek_v3", "tiny-llama4"}) {
    for (const Layout& l : layouts) {
      // tiny-llama4 has 6 attention heads: no 4-way split.
      if (std::string(model) == "tiny-llama4" && l.name == "tp4") continue;
      cases.push_back(Case{model, l});
    }
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
  auto refusal = [&](const ParallelConfig& parallel) {
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

namespace moeserve {
namespace {

// Expert parallelism over DP replicas where one replica has never run a token while the other
// prefills its longest prompt: the idle replica's ranks compute their experts for every token
// the other sends (far more rows than their own empty steps), and the busy replica's logits
// still match transformers. Both all-to-all backends.
TEST(ParallelLayoutTest, IdleReplicaServesTheExpertsOfAnotherReplicasPrefill) {
  const std::string dir = testing::fixture_model("tiny-mixtral");
  const testing::Reference reference(dir + "/reference.safetensors");
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok());
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok());
  const std::vector<int32_t> prompt = reference.ids("prompt_4");  // 160 tokens
  const int blocks = (static_cast<int>(prompt.size()) + kBlockSize - 1) / kBlockSize;
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  for (All2AllBackend backend : {All2AllBackend::kAllgatherReducescatter, All2AllBackend::kAlltoall}) {
    auto group = RankGroup::create(*config, *checkpoint, layout(1, 2, true, backend), ModelOptions{}, blocks, kBlockSize);
    ASSERT_TRUE(group.ok()) << group.error().message;
    std::vector<std::vector<RunnerSeq>> batches(2);
    batches[0].push_back(RunnerSeq{.tokens = prompt,
                                   .num_computed = 0,
                                   .num_new = static_cast<int>(prompt.size()),
                                   .samples = true,
                                   .all_logits = true,
                                   .block_table = table});
    const std::vector<Tensor> logits = (*group)->step(batches);
    const TensorView expected = reference.tensor("logits_4");
    ASSERT_EQ(logits[0].shape()[0], expected.dim(0));
    EXPECT_EQ(logits[1].shape()[0], 0);
    EXPECT_LT(testing::max_row_relative_error(logits[0].f32(), expected.as<float>(), expected.dim(0),
                                              config->vocab_size),
              testing::kParallelTolerance)
        << all2all_backend_name(backend);
  }
}

}  // namespace
}  // namespace moeserve
