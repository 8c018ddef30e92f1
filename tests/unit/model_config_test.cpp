// config.json parsing: every supported family, both rope forms, layer patterns, overrides, and
// refusals that name the field, the value and what is supported.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "model/config.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

Json fixture_config(const std::string& name) {
  return Json::parse(std::ifstream(testing::fixture_model(name) + "/config.json"));
}

std::string error_of(const Json& config, const Json& overrides = Json::object()) {
  auto parsed = parse_model_config(config, overrides);
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : parsed.error().message;
}

TEST(ModelConfig, MixtralFixture) {
  auto config = parse_model_config(fixture_config("tiny-mixtral"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, Architecture::kMixtral);
  EXPECT_EQ(config->num_kv_heads, 2);
  EXPECT_EQ(config->head_dim, 16);
  ASSERT_TRUE(config->moe);
  EXPECT_EQ(config->moe->num_experts, 8);
  EXPECT_TRUE(config->moe->norm_topk_prob);
  EXPECT_EQ(config->layer_is_moe, std::vector<bool>({true, true}));
  EXPECT_DOUBLE_EQ(config->rope.theta, 1e6);
}

TEST(ModelConfig, DeepseekV3FixtureHasMlaYarnAndGroupedRouting) {
  auto config = parse_model_config(fixture_config("tiny-deepseek_v3"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_TRUE(config->mla);
  EXPECT_EQ(config->mla->q_lora_rank, 48);
  EXPECT_EQ(config->rope.kind, RopeKind::kYarn);
  EXPECT_EQ(config->rope.layout, RopeLayout::kInterleaved);
  EXPECT_EQ(config->rope.rotary_dim, 8);
  EXPECT_EQ(config->moe->selection, RouterSelection::kGroupLimitedTop2Sum);
  EXPECT_EQ(config->moe->scoring, RouterScoring::kSigmoid);
  EXPECT_TRUE(config->moe->has_score_correction_bias);
  EXPECT_FLOAT_EQ(config->moe->routed_scaling_factor, 2.5f);
  EXPECT_EQ(config->layer_is_moe, std::vector<bool>({false, true, true}));
  // 24^-0.5 × (0.1 ln 40 + 1)²
  const double m = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(config->attention_scale, m * m / std::sqrt(24.0), 1e-6);
}

TEST(ModelConfig, RopeParametersFormEqualsRopeScalingForm) {
  Json legacy = fixture_config("tiny-deepseek_v2");
  Json modern = legacy;
  Json params = modern["rope_scaling"];
  params["rope_type"] = params["type"];
  params.erase("type");
  params["rope_theta"] = modern["rope_theta"];
  modern.erase("rope_scaling");
  modern.erase("rope_theta");
  modern["rope_parameters"] = params;
  auto a = parse_model_config(legacy);
  auto b = parse_model_config(modern);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->rope.kind, b->rope.kind);
  EXPECT_DOUBLE_EQ(a->rope.theta, b->rope.theta);
  EXPECT_DOUBLE_EQ(a->rope.factor, b->rope.factor);
  EXPECT_DOUBLE_EQ(a->rope.mscale_all_dim, b->rope.mscale_all_dim);
  EXPECT_FLOAT_EQ(a->attention_scale, b->attention_scale);
}

TEST(ModelConfig, QwenLayerPatterns) {
  Json config = fixture_config("tiny-qwen2_moe");
  config["num_hidden_layers"] = 6;
  config["mlp_only_layers"] = {0, 4};
  config["decoder_sparse_step"] = 2;
  auto parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->layer_is_moe, std::vector<bool>({false, true, false, true, false, true}));
  EXPECT_TRUE(parsed->qkv_bias);
  EXPECT_EQ(parsed->moe->shared_intermediate_size, 80);
  EXPECT_TRUE(parsed->moe->shared_expert_gate);
}

TEST(ModelConfig, DeepseekLayerPattern) {
  Json config = fixture_config("tiny-deepseek_v2");
  config["num_hidden_layers"] = 7;
  config["first_k_dense_replace"] = 2;
  config["moe_layer_freq"] = 2;
  auto parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->layer_is_moe, std::vector<bool>({false, false, true, false, true, false, true}));
}

TEST(ModelConfig, HfOverridesAreMerged) {
  auto parsed = parse_model_config(fixture_config("tiny-qwen3_moe"), Json{{"num_hidden_layers", 8}});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->num_layers, 8);
  EXPECT_EQ(parsed->layer_is_moe.size(), 8u);
  EXPECT_THAT(error_of(fixture_config("tiny-qwen3_moe"), Json::array()), HasSubstr("--hf-overrides"));
}

TEST(ModelConfig, DenseFamiliesParse) {
  for (const char* arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    Json config = fixture_config("tiny-mixtral");
    config["architectures"] = {arch};
    auto parsed = parse_model_config(config);
    ASSERT_TRUE(parsed.ok()) << arch << ": " << parsed.error().message;
    EXPECT_FALSE(parsed->moe) << arch;
  }
}

TEST(ModelConfig, RefusesUnknownArchitectureListingSupported) {
  Json config = fixture_config("tiny-mixtral");
  config["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_THAT(error_of(config), AllOf(HasSubstr("GPT2LMHeadModel"), HasSubstr("MixtralForCausalLM"),
                                      HasSubstr("DeepseekV3ForCausalLM"), HasSubstr("Qwen3MoeForCausalLM")));
}

TEST(ModelConfig, RefusesUnsupportedValuesByName) {
  Json config = fixture_config("tiny-mixtral");
  config["hidden_act"] = "gelu";
  EXPECT_THAT(error_of(config), AllOf(HasSubstr("hidden_act"), HasSubstr("gelu"), HasSubstr("silu")));
  config = fixture_config("tiny-mixtral");
  config["rope_scaling"] = {{"type", "longrope"}, {"factor", 2.0}};
  EXPECT_THAT(error_of(config), AllOf(HasSubstr("longrope"), HasSubstr("yarn")));
  config = fixture_config("tiny-deepseek_v3");
  config["topk_method"] = "random";
  EXPECT_THAT(error_of(config), AllOf(HasSubstr("topk_method"), HasSubstr("random"), HasSubstr("noaux_tc")));
  config = fixture_config("tiny-mixtral");
  config["num_key_value_heads"] = 3;
  EXPECT_THAT(error_of(config), HasSubstr("num_key_value_heads"));
  config = fixture_config("tiny-mixtral");
  config.erase("hidden_size");
  EXPECT_THAT(error_of(config), HasSubstr("hidden_size"));
  config = fixture_config("tiny-mixtral");
  config["hidden_size"] = "64";
  EXPECT_THAT(error_of(config), AllOf(HasSubstr("hidden_size"), HasSubstr("integer")));
  config = fixture_config("tiny-mixtral");
  config["num_experts_per_tok"] = 9;
  EXPECT_THAT(error_of(config), HasSubstr("num_experts_per_tok"));
}

}  // namespace
}  // namespace moeserve
