// The weight plan against real checkpoints: for every fixture (written by transformers) and the
// bundled trained Mixtral, the plan's tensor names are exactly the checkpoint's, each with the
// shape the checkpoint stores; lookups, packing groups and sharding follow the plan's rules;
// DeepSeek-V3's MTP layer is declared (for sizing) under its own layer index.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/weight_plan.h"
#include "plan/planner.h"
#include "plan/weights.h"
#include "reference_data.h"

namespace moeserve {
namespace {

std::set<std::string> plan_tensor_names(const WeightPlan& plan) {
  std::set<std::string> names;
  for (const WeightEntry& entry : plan.entries()) {
    if (entry.mtp) continue;
    for (int i = 0; i < entry.count; ++i) names.insert(entry.tensor_name(i));
  }
  return names;
}

class WeightPlanFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightPlanFixture, NamesAndShapesAreTheCheckpoints) {
  const std::string dir = GetParam();
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  const WeightPlan plan = WeightPlan::build(*config);
  const std::set<std::string> planned = plan_tensor_names(plan);
  const std::vector<std::string> stored_list = checkpoint->tensor_names();
  const std::set<std::string> stored(stored_list.begin(), stored_list.end());
  for (const std::string& name : stored) EXPECT_TRUE(planned.count(name)) << "not in the plan: " << name;
  for (const std::string& name : planned) EXPECT_TRUE(stored.count(name)) << "not in the checkpoint: " << name;
  for (const WeightEntry& entry : plan.entries()) {
    for (int i = 0; i < entry.count; ++i) {
      auto view = checkpoint->require(entry.tensor_name(i), entry.stored_shape());
      EXPECT_TRUE(view.ok()) << (view.ok() ? "" : view.error().message);
    }
  }
}

std::vector<std::string> fixture_dirs() {
  std::vector<std::string> dirs;
  for (const char* name : {"tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2", "tiny-deepseek_v3",
                           "tiny-deepseek_v32", "tiny-gpt_oss", "tiny-llama4"}) {
    dirs.push_back(testing::fixture_model(name));
  }
  dirs.push_back(testing::demo_model());
  return dirs;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, WeightPlanFixture, ::testing::ValuesIn(fixture_dirs()),
                         [](const auto& info) {
                           std::string name = info.param.substr(info.param.find_last_of('/') + 1);
                           std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
                           return name;
                         });

// Llama 4's fused experts: gate and up are the two halves of one gate_up_proj [E, hidden, 2I],
// down is down_proj [E, I, hidden]; the multimodal checkpoint's names sit under language_model.
TEST(WeightPlan, Llama4FusedExpertsAndMultimodalNames) {
  auto config = load_model_config(testing::fixture_model("tiny-llama4"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  WeightPlan plan = WeightPlan::build(*config);
  const WeightEntry& gate = plan.get(WeightRole::kExpertGate, 1);
  const WeightEntry& up = plan.get(WeightRole::kExpertUp, 1);
  const WeightEntry& down = plan.get(WeightRole::kExpertDown, 1);
  EXPECT_EQ(gate.tensor_name(3), "model.layers.1.feed_forward.experts.gate_up_proj");
  EXPECT_EQ(up.tensor_name(0), gate.tensor_name(0));
  EXPECT_EQ(gate.shape, (Shape{64, 96}));
  EXPECT_EQ(gate.stored_shape(), (Shape{4, 96, 128}));
  EXPECT_EQ(gate.fused_offset, 0);
  EXPECT_EQ(up.fused_offset, 64);
  EXPECT_EQ(down.shape, (Shape{96, 64}));
  EXPECT_EQ(down.stored_shape(), (Shape{4, 64, 96}));
  EXPECT_EQ(plan.find(WeightRole::kExpertGate, 0), nullptr);  // a dense layer
  EXPECT_EQ(plan.get(WeightRole::kMlpGate, 0).name, "model.layers.0.feed_forward.gate_proj.weight");
  EXPECT_EQ(plan.get(WeightRole::kRouter, 1).name, "model.layers.1.feed_forward.router.weight");

  config->weight_prefix = "language_model.";
  plan = WeightPlan::build(*config);
  EXPECT_EQ(plan.get(WeightRole::kEmbedding).name, "language_model.model.embed_tokens.weight");
  EXPECT_EQ(plan.get(WeightRole::kLmHead).name, "language_model.lm_head.weight");
  EXPECT_EQ(plan.get(WeightRole::kFinalNorm).name, "language_model.model.norm.weight");
  EXPECT_EQ(plan.get(WeightRole::kExpertDown, 1).tensor_name(0),
            "language_model.model.layers.1.feed_forward.experts.down_proj");
}

TEST(WeightPlan, LookupsAndPackingGroups) {
  auto config = load_model_config(testing::fixture_model("tiny-qwen2_moe"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  const WeightPlan plan = WeightPlan::build(*config);
  const int layer = 0;
  ASSERT_TRUE(config->layer_is_moe[layer]);
  // q, k, v in that order, and their biases (Qwen2 has q/k/v bias).
  const auto qkv = plan.packed(PackGroup::kQkv, layer);
  ASSERT_EQ(qkv.size(), 3u);
  EXPECT_EQ(qkv[0]->role, WeightRole::kQ);
  EXPECT_EQ(qkv[1]->role, WeightRole::kK);
  EXPECT_EQ(qkv[2]->role, WeightRole::kV);
  EXPECT_EQ(plan.packed(PackGroup::kQkvBias, layer).size(), 3u);
  EXPECT_EQ(plan.packed(PackGroup::kExpertGateUp, layer).size(), 2u);
  EXPECT_EQ(plan.packed(PackGroup::kSharedGateUp, layer).size(), 2u);
  // A MoE layer has no dense MLP; Qwen2-MoE has no q/k norm and no router bias.
  EXPECT_EQ(plan.find(WeightRole::kMlpGate, layer), nullptr);
  EXPECT_EQ(plan.find(WeightRole::kQNorm, layer), nullptr);
  EXPECT_EQ(plan.find(WeightRole::kRouterBias, layer), nullptr);
  const WeightEntry& experts = plan.get(WeightRole::kExpertDown, layer);
  EXPECT_EQ(experts.count, config->moe->num_experts);
  EXPECT_EQ(experts.sharding, Sharding::kExpertRow);
  EXPECT_EQ(experts.shape, (Shape{config->hidden_size, config->moe->expert_intermediate_size}));
  EXPECT_EQ(plan.get(WeightRole::kK, layer).sharding, Sharding::kKvHeads);
  EXPECT_EQ(plan.get(WeightRole::kO, layer).sharding, Sharding::kRow);
}

TEST(WeightPlan, DeepseekV3DeclaresItsMtpLayerAndKeepsTheRouterBiasInFloat32) {
  auto resolved = plan::resolve_model("deepseek-ai/DeepSeek-V3");
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  const ModelConfig& config = resolved->config;
  const WeightPlan plan = WeightPlan::build(config);
  ASSERT_EQ(plan.num_mtp_layers(), 1);
  const WeightEntry& eh_proj = plan.get(WeightRole::kMtpEhProj, config.num_layers);
  EXPECT_EQ(eh_proj.name, "model.layers.61.eh_proj.weight");
  EXPECT_TRUE(eh_proj.mtp);
  EXPECT_EQ(eh_proj.shape, (Shape{config.hidden_size, 2 * config.hidden_size}));
  EXPECT_TRUE(plan.get(WeightRole::kRouterBias, 3).keep_fp32);
  EXPECT_EQ(plan.find(WeightRole::kRouter, 0), nullptr);  // first_k_dense_replace = 3
  // Tensor names of routed expert 255 of the last layer.
  EXPECT_EQ(plan.get(WeightRole::kExpertGate, 60).tensor_name(255), "model.layers.60.mlp.experts.255.gate_proj.weight");
}

// DeepSeek-V3.2's indexer: whole on every rank; wk and weights_proj stack after kv_a (they read
// the same hidden state), k_norm stays float32.
TEST(WeightPlan, DeepseekV32StacksItsIndexerAfterTheLatentProjection) {
  auto resolved = plan::resolve_model("deepseek-ai/DeepSeek-V3.2");
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  const WeightPlan plan = WeightPlan::build(resolved->config);
  const std::vector<const WeightEntry*> kv_a = plan.packed(PackGroup::kMlaKvA, 60);
  ASSERT_EQ(kv_a.size(), 3u);
  EXPECT_EQ(kv_a[0]->name, "model.layers.60.self_attn.kv_a_proj_with_mqa.weight");
  EXPECT_EQ(kv_a[1]->name, "model.layers.60.self_attn.indexer.wk.weight");
  EXPECT_EQ(kv_a[1]->shape, (Shape{128, 7168}));
  EXPECT_EQ(kv_a[2]->name, "model.layers.60.self_attn.indexer.weights_proj.weight");
  EXPECT_FALSE(kv_a[2]->quantizable);  // bf16 in the published fp8 checkpoint
  const WeightEntry& wq_b = plan.get(WeightRole::kIndexerQB, 0);
  EXPECT_EQ(wq_b.shape, (Shape{64 * 128, 1536}));
  for (const WeightEntry* entry : {&wq_b, kv_a[1], kv_a[2]}) EXPECT_EQ(entry->sharding, Sharding::kReplicated);
  EXPECT_TRUE(plan.get(WeightRole::kIndexerKNormBias, 0).keep_fp32);
  EXPECT_NE(plan.find(WeightRole::kIndexerQB, 61), nullptr);  // the MTP layer has one too
  EXPECT_EQ(plan::resolve_model("deepseek-ai/DeepSeek-V3").value().config.mla->indexer, std::nullopt);
}

// A decode step reads what a token passes through, minus the embedding lookup: the active
// parameters less the embedding (an untied checkpoint), with all experts when every one runs.
TEST(WeightPlan, DecodeReadElementsAreTheActiveParametersBarTheEmbedding) {
  auto resolved = plan::resolve_model("mistralai/Mixtral-8x7B-v0.1");
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  const ModelConfig& config = resolved->config;
  ASSERT_FALSE(config.tie_word_embeddings);
  const WeightPlan plan = WeightPlan::build(config);
  const plan::ParamCounts counts = plan::count_params(config, plan);
  EXPECT_EQ(decode_read_elements(config, plan), static_cast<double>(counts.active - counts.embedding));
  EXPECT_EQ(decode_read_elements(config, plan, config.moe->num_experts),
            static_cast<double>(counts.total - counts.embedding));
}

}  // namespace
}  // namespace moeserve
