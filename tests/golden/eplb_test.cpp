// EPLB: DeepSeek's rebalancing algorithm against the example its README publishes (the
// hierarchical policy), its packing/replication invariants, the global policy's choice, and
// end to end — with a tiny step_interval the experts are rearranged several times while the
// fixtures generate, weights move between ranks, redundant replicas serve tokens, and the logits
// and greedy tokens still match the reference exactly as with no EPLB.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "parallel_golden.h"
#include "runtime/eplb_algorithm.h"

namespace moeserve {
namespace {

TEST(EplbAlgorithm, MatchesDeepSeeksPublishedExample) {
  // deepseek-ai/EPLB README: 2 layers × 12 experts, 16 slots, 4 groups, 2 nodes, 8 GPUs.
  const std::vector<std::vector<double>> weight = {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
                                                   {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};
  const std::vector<std::vector<int32_t>> expected = {{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                                      {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}};
  const eplb::RebalanceParams params{.num_physical = 16, .num_groups = 4, .num_nodes = 2, .num_ranks = 8};
  ASSERT_TRUE(eplb::uses_hierarchical(params));
  for (size_t layer = 0; layer < weight.size(); ++layer) {
    EXPECT_EQ(eplb::rebalance_layer(weight[layer], params), expected[layer]) << "layer " << layer;
  }
}

TEST(EplbAlgorithm, GlobalPolicyWhenGroupsDoNotDivideOverNodes) {
  const eplb::RebalanceParams params{.num_physical = 16, .num_groups = 3, .num_nodes = 2, .num_ranks = 8};
  EXPECT_FALSE(eplb::uses_hierarchical(params));
  const std::vector<double> load = {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86};
  const std::vector<int32_t> placement = eplb::rebalance_layer(load, params);
  // Every expert placed; the 4 redundant slots replicate the hottest per-replica experts.
  std::vector<int> replicas(12, 0);
  for (int32_t expert : placement) ++replicas[expert];
  for (int expert = 0; expert < 12; ++expert) EXPECT_GE(replicas[expert], 1);
  EXPECT_EQ(replicas[10], 2);  // 183
  EXPECT_EQ(replicas[5], 2);   // 165
  // Better balanced than the identity placement of the same slots.
  std::vector<int32_t> identity(16);
  for (int slot = 0; slot < 16; ++slot) identity[slot] = slot < 12 ? slot : slot - 12;
  EXPECT_GT(eplb::balancedness(expected_rank_load(load, placement, 8)),
            eplb::balancedness(expected_rank_load(load, identity, 8)));
}

TEST(EplbAlgorithm, BalancedPackingFillsEveryPackExactly) {
  const std::vector<double> weights = {5, 1, 9, 3, 3, 7, 2, 8};
  const eplb::Packing packing = eplb::balanced_packing(weights, 4);
  std::vector<int> items(4, 0);
  std::vector<double> load(4, 0.0);
  std::set<std::pair<int, int>> positions;
  for (size_t i = 0; i < weights.size(); ++i) {
    ++items[packing.pack[i]];
    load[packing.pack[i]] += weights[i];
    EXPECT_TRUE(positions.insert({packing.pack[i], packing.rank_in_pack[i]}).second);
  }
  for (int pack = 0; pack < 4; ++pack) EXPECT_EQ(items[pack], 2);
  EXPECT_EQ(*std::max_element(load.begin(), load.end()), 10.0);  // 9+1, 8+2, 7+3, 5+3: optimal
}

TEST(EplbAlgorithm, ReplicatesTheHighestLoadPerReplica) {
  const eplb::Replication replication = eplb::replicate_experts({10, 40, 20}, 6);
  EXPECT_EQ(replication.phys2log, (std::vector<int>{0, 1, 2, 1, 1, 2}));  // 40 → 20 each → 20 vs 13.3 …
  EXPECT_EQ(replication.log_count, (std::vector<int>{1, 3, 2}));
}

struct EplbCase {
  std::string model;
  int tp, dp, redundant;
  All2AllBackend backend;
};

class EplbGoldenTest : public ::testing::TestWithParam<EplbCase> {};

TEST_P(EplbGoldenTest, RearrangesDuringGenerationWithUnchangedOutputs) {
  const EplbCase& param = GetParam();
  ParallelConfig parallel{.tensor_parallel_size = param.tp,
                          .data_parallel_size = param.dp,
                          .enable_expert_parallel = true,
                          .all2all = param.backend,
                          .num_redundant_experts = param.redundant};
  parallel.eplb = EplbConfig{.enabled = true,
                             .window_size = 3,
                             .step_interval = 4,
                             .num_redundant_experts = param.redundant,
                             .log_balancedness = true};
  ASSERT_TRUE(parallel.validate().ok());
  testing::check_layout_against_reference(param.model, parallel, [&](RankGroup& group) {
    const EpStats stats = group.ep_stats();
    // 16 steps, the first rearrangement after 4 / 4 = 1 step, then every 4: at steps 1, 5, 9, 13.
    EXPECT_EQ(stats.rearrangements, 4);
    EXPECT_GT(stats.balancedness, 0.0);
    EXPECT_LE(stats.balancedness, 1.0);
    int64_t total = 0;
    for (int64_t tokens : stats.rank_tokens_total) total += tokens;
    EXPECT_GT(total, 0);
    // The placement really changed from the initial one, replicas included.
    const ModelConfig& config = group.config();
    const ExpertMap initial =
        ExpertMap::initial(config.moe->num_experts, param.redundant, param.tp * param.dp, ExpertPlacement::kLinear);
    bool changed = false;
    for (int layer = 0; layer < config.num_layers; ++layer) {
      if (config.layer_is_moe[layer]) changed = changed || group.model(0).expert_map(layer).phys2log != initial.phys2log;
    }
    EXPECT_TRUE(changed);
    // Each rearrangement is recorded for the live page: in order, after its step, and the last
    // one's arrivals are where those experts are now.
    ASSERT_EQ(stats.recent_rearrangements.size(), 4u);
    for (size_t idx = 0; idx < stats.recent_rearrangements.size(); ++idx) {
      const EplbRearrangement& record = stats.recent_rearrangements[idx];
      EXPECT_EQ(record.index, static_cast<int>(idx) + 1);
      EXPECT_EQ(record.step, 1 + 4 * static_cast<int64_t>(idx));
      EXPECT_GT(record.balancedness_after, 0.0);
      EXPECT_LE(record.balancedness_after, 1.0 + 1e-9);
      for (const EplbLayerMove& move : record.layers) {
        EXPECT_GT(move.slots_changed, 0);
        EXPECT_TRUE(config.layer_is_moe[move.layer]) << "layer " << move.layer;
      }
    }
    EXPECT_FALSE(stats.recent_rearrangements.front().layers.empty()) << "the first one moved experts";
    for (const EplbLayerMove& move : stats.recent_rearrangements.back().layers) {
      const ExpertMap& map = group.model(0).expert_map(move.layer);
      const int per_rank = map.slots_per_rank();
      for (const EplbLayerMove::Arrival& arrival : move.arrivals) {
        const auto begin = map.phys2log.begin() + arrival.rank * per_rank;
        EXPECT_NE(std::find(begin, begin + per_rank, arrival.expert), begin + per_rank)
            << "layer " << move.layer << ": expert " << arrival.expert << " is on rank " << arrival.rank;
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EplbGoldenTest,
                         ::testing::Values(EplbCase{"tiny-mixtral", 1, 2, 2, All2AllBackend::kAllgatherReducescatter},
                                           EplbCase{"tiny-qwen3_moe", 1, 2, 2, All2AllBackend::kAlltoall},
                                           EplbCase{"tiny-qwen2_moe", 2, 2, 4, All2AllBackend::kAllgatherReducescatter},
                                           EplbCase{"tiny-deepseek_v2", 2, 1, 2, All2AllBackend::kAlltoall},
                                           EplbCase{"tiny-deepseek_v3", 2, 2, 4, All2AllBackend::kAlltoall},
                                           // fp8 experts move with their per-row scales
                                           EplbCase{"tiny-qwen3_moe-fp8", 1, 2, 2, All2AllBackend::kAlltoall},
                                           EplbCase{"tiny-deepseek_v3-fp8", 2, 2, 4,
                                                    All2AllBackend::kAllgatherReducescatter},
                                           // GPT-OSS's experts move with their float32 biases
                                           EplbCase{"tiny-gpt_oss", 2, 2, 4, All2AllBackend::kAlltoall}),
                         [](const ::testing::TestParamInfo<EplbCase>& info) {
                           std::string name = info.param.model;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace moeserve
