// config.json parsing: every supported family, both rope forms, layer patterns, overrides, and
// refusals that name the field, the value and what is supported. A config.json (and
// --hf-overrides) is user input: a table of malformed variants of every field the parser reads
// must each be refused by name, and no JSON at all may make parse_model_config throw (a throw
// reaches abort(): exit 134).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <map>
#include <vector>

#include "model/config.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

Json fixture_config(const std::string& name) {
  // Read once per fixture: the malformed-value tables below parse thousands of variants.
  static std::map<std::string, Json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    it = cache.emplace(name, Json::parse(std::ifstream(testing::fixture_model(name) + "/config.json"))).first;
  }
  return it->second;
}

std::string error_of(const Json& config, const Json& overrides = Json::object()) {
  auto parsed = parse_model_config(config, overrides);
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : parsed.error().message;
}

// Llama 4 (text): MoE on moe_layers with the dense MLP's own size, top-1 sigmoid routing scaling
// the expert's input, chunked / NoPE layers, L2 QK-norm, temperature tuning, interleaved rope.
TEST(ModelConfig, Llama4Fixture) {
  auto config = parse_model_config(fixture_config("tiny-llama4"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, Architecture::kLlama4);
  EXPECT_EQ(config->intermediate_size, 160);  // intermediate_size_mlp
  ASSERT_TRUE(config->moe.has_value());
  EXPECT_EQ(config->moe->expert_intermediate_size, 64);
  EXPECT_EQ(config->moe->shared_intermediate_size, 64);
  EXPECT_EQ(config->moe->num_experts, 4);
  EXPECT_EQ(config->moe->top_k, 1);
  EXPECT_EQ(config->moe->scoring, RouterScoring::kSigmoid);
  EXPECT_FALSE(config->moe->norm_topk_prob);
  EXPECT_TRUE(config->moe->scale_expert_input);
  EXPECT_EQ(config->layer_is_moe, (std::vector<bool>{false, true, false, true, false, true}));
  EXPECT_EQ(config->layer_nope, (std::vector<bool>{false, false, false, true, false, false}));
  EXPECT_EQ(config->layer_chunked, (std::vector<bool>{true, true, true, false, true, true}));
  EXPECT_EQ(config->attention_chunk_size, 24);
  EXPECT_TRUE(config->qk_l2_norm);
  EXPECT_FLOAT_EQ(config->attn_temperature_floor, 16.0f);
  EXPECT_FLOAT_EQ(config->attn_temperature_scale, 0.1f);
  EXPECT_EQ(config->rope.kind, RopeKind::kLlama3);
  EXPECT_EQ(config->rope.layout, RopeLayout::kInterleaved);

  // Defaults as transformers' Llama4TextConfig: MoE every interleave_moe_layer_step-th layer, NoPE
  // every no_rope_layer_interval-th with full attention, chunked elsewhere; the published
  // configs' attn_temperature_tuning 4 means on, 0 off; a null chunk size attends fully.
  Json defaults = fixture_config("tiny-llama4");
  for (const char* key : {"moe_layers", "no_rope_layers", "layer_types"}) defaults.erase(key);
  defaults["interleave_moe_layer_step"] = 3;
  defaults["no_rope_layer_interval"] = 2;
  defaults["attn_temperature_tuning"] = 0;
  auto derived = parse_model_config(defaults);
  ASSERT_TRUE(derived.ok()) << derived.error().message;
  EXPECT_EQ(derived->layer_is_moe, (std::vector<bool>{false, false, true, false, false, true}));
  EXPECT_EQ(derived->layer_nope, (std::vector<bool>{false, true, false, true, false, true}));
  EXPECT_EQ(derived->layer_chunked, (std::vector<bool>{true, false, true, false, true, false}));
  EXPECT_EQ(derived->attn_temperature_floor, 0.0f);
  defaults["attn_temperature_tuning"] = 4;
  defaults["attention_chunk_size"] = nullptr;
  derived = parse_model_config(defaults);
  ASSERT_TRUE(derived.ok()) << derived.error().message;
  EXPECT_FLOAT_EQ(derived->attn_temperature_floor, 16.0f);
  EXPECT_EQ(derived->layer_chunked, std::vector<bool>(6, false));

  Json bad = fixture_config("tiny-llama4");
  bad["layer_types"][2] = "sliding_attention";
  EXPECT_THAT(error_of(bad), AllOf(HasSubstr("layer_types"), HasSubstr("sliding_attention")));
  bad = fixture_config("tiny-llama4");
  bad["moe_layers"] = Json::array({6});
  EXPECT_THAT(error_of(bad), HasSubstr("moe_layers"));
  // The multimodal checkpoint's config: its text_config served, tensors under language_model.
  Json text = fixture_config("tiny-llama4");
  text.erase("architectures");
  text.erase("tie_word_embeddings");
  const Json multimodal = {{"architectures", {"Llama4ForConditionalGeneration"}},
                           {"model_type", "llama4"},
                           {"tie_word_embeddings", false},
                           {"text_config", text},
                           {"vision_config", {{"model_type", "llama4_vision_model"}}}};
  auto served = parse_model_config(multimodal);
  ASSERT_TRUE(served.ok()) << served.error().message;
  EXPECT_EQ(served->architecture, Architecture::kLlama4);
  EXPECT_EQ(served->architecture_name, "Llama4ForConditionalGeneration");
  EXPECT_EQ(served->weight_prefix, "language_model.");
  EXPECT_EQ(served->layer_is_moe, config->layer_is_moe);
  EXPECT_EQ(served->layer_nope, config->layer_nope);
  EXPECT_EQ(served->vocab_size, config->vocab_size);
  EXPECT_THAT(error_of({{"architectures", {"Llama4ForConditionalGeneration"}}}), HasSubstr("text_config"));
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

TEST(ModelConfig, GptOssFixtureHasWindowsSinksYarnAndBiasedClampedExperts) {
  auto config = parse_model_config(fixture_config("tiny-gpt_oss"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, Architecture::kGptOss);
  EXPECT_EQ(config->sliding_window, 12);
  EXPECT_EQ(config->layer_windows, std::vector<int>({12, 0, 12, 0}));  // sliding, full, sliding, full
  EXPECT_EQ(config->window(0), 12);
  EXPECT_EQ(config->window(1), 0);
  EXPECT_TRUE(config->attention_sinks);
  EXPECT_TRUE(config->qkv_bias);
  EXPECT_TRUE(config->o_bias);
  EXPECT_EQ(config->rope.kind, RopeKind::kYarn);
  EXPECT_EQ(config->rope.layout, RopeLayout::kHalf);
  EXPECT_FALSE(config->rope.truncate);
  EXPECT_DOUBLE_EQ(config->rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(config->rope.theta, 150000.0);
  ASSERT_TRUE(config->moe);
  EXPECT_EQ(config->moe->num_experts, 8);
  EXPECT_EQ(config->moe->top_k, 3);
  EXPECT_EQ(config->moe->expert_intermediate_size, 64);
  EXPECT_EQ(config->moe->scoring, RouterScoring::kTopKSoftmax);
  EXPECT_TRUE(config->moe->router_bias && config->moe->expert_bias && config->moe->clamped_swiglu);
  EXPECT_FLOAT_EQ(config->moe->swiglu_alpha, 1.702f);
  EXPECT_FLOAT_EQ(config->moe->swiglu_limit, 7.0f);
  EXPECT_EQ(config->layer_is_moe, std::vector<bool>(4, true));
  // Without layer_types, transformers' default: even layers slide.
  auto defaulted = parse_model_config(fixture_config("tiny-gpt_oss"), Json{{"layer_types", nullptr}});
  ASSERT_TRUE(defaulted.ok()) << defaulted.error().message;
  EXPECT_EQ(defaulted->layer_windows, std::vector<int>({12, 0, 12, 0}));
}

TEST(ModelConfig, GptOssRefusesMalformedLayerTypes) {
  const Json config = fixture_config("tiny-gpt_oss");
  for (const Json& types : {Json("sliding_attention"), Json::array({"full_attention"}),
                            Json::array({"full_attention", "full_attention", "chunked_attention", "full_attention"}),
                            Json::array({1, 2, 3, 4})}) {
    EXPECT_THAT(error_of(config, Json{{"layer_types", types}}), HasSubstr("layer_types")) << types.dump();
  }
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

TEST(ModelConfig, DeepseekV32FixtureIsV3WithAnIndexer) {
  auto config = parse_model_config(fixture_config("tiny-deepseek_v32"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, Architecture::kDeepseekV32);
  ASSERT_TRUE(config->mla && config->mla->indexer);
  EXPECT_EQ(config->mla->indexer->heads, 8);
  EXPECT_EQ(config->mla->indexer->head_dim, 16);
  EXPECT_EQ(config->mla->indexer->topk, 6);
  EXPECT_EQ(config->mla->cache_entry(), 32 + 8 + 16);  // latent, rope key, index key
  EXPECT_EQ(config->moe->selection, RouterSelection::kGroupLimitedTop2Sum);
  const Json v32 = fixture_config("tiny-deepseek_v32");
  EXPECT_THAT(error_of(v32, Json{{"q_lora_rank", nullptr}}), HasSubstr("q_lora_rank"));
  EXPECT_THAT(error_of(v32, Json{{"index_head_dim", 4}}), HasSubstr("index_head_dim"));
  for (const char* key : {"index_topk", "index_n_heads", "index_head_dim"}) {
    EXPECT_THAT(error_of(v32, Json{{key, 0}}), HasSubstr(key));
    EXPECT_THAT(error_of(v32, Json{{key, nullptr}}), HasSubstr(key));
  }
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


TEST(ModelConfig, MalformedQuantizationConfigIsRefusedNotThrown) {
  // Each used to throw nlohmann::type_error out of the parser (SIGABRT) or be silently ignored.
  const std::vector<Json> malformed = {
      "fp8",
      8,
      Json::array({"fp8"}),
      true,
      Json::object(),                                               // no quant_method
      {{"weight_block_size", {128, 128}}},                          // no quant_method
      {{"quant_method", 8}},                                        // not a string
      {{"quant_method", {{"name", "fp8"}}}},
      {{"quant_method", "fp8"}, {"weight_block_size", "128x128"}},
      {{"quant_method", "fp8"}, {"weight_block_size", 128}},
      {{"quant_method", "fp8"}, {"weight_block_size", {128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {128, 128, 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {"128", "128"}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {128.5, 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {128, -128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {0, 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {int64_t{1} << 40, 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {Json(), 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {{{"rows", 128}}, 128}}},
  };
  for (const Json& quant : malformed) {
    Json config = fixture_config("tiny-deepseek_v3");
    config["quantization_config"] = quant;
    std::string message;
    EXPECT_NO_THROW(message = error_of(config)) << quant.dump();
    EXPECT_THAT(message, HasSubstr("quant")) << quant.dump();
    // The same through --hf-overrides (a merge patch: a nested object merges into null here).
    EXPECT_NO_THROW(message = error_of(fixture_config("tiny-mixtral"), Json{{"quantization_config", quant}}))
        << quant.dump();
    EXPECT_THAT(message, HasSubstr("quant")) << quant.dump();
  }
  EXPECT_THAT(error_of(fixture_config("tiny-mixtral"), Json{{"quantization_config", "fp8"}}),
              HasSubstr("'quantization_config' must be an object with a quant_method, got \"fp8\""));
  EXPECT_THAT(error_of(fixture_config("tiny-mixtral"), Json{{"quantization_config", Json::object({{"a", 1}})}}),
              HasSubstr("no quant_method (supported: fp8, mxfp4)"));
  EXPECT_THAT(error_of(fixture_config("tiny-mixtral"),
                       Json{{"quantization_config", {{"quant_method", "fp8"}, {"weight_block_size", {"a", 1}}}}}),
              HasSubstr("'quantization_config.weight_block_size' must be two positive integers [rows, cols], got "
                        "[\"a\",1]"));

  Json config = fixture_config("tiny-deepseek_v3");
  config["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128, 64}}};
  auto parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->fp8_block_size, (std::array<int, 2>{128, 64}));
  config["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", nullptr}};  // per-tensor scales
  parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->fp8_block_size, (std::array<int, 2>{0, 0}));
  EXPECT_FALSE(parsed->fp8_scale_ue8m0);
  // DeepSeek-V3.1's power-of-two scales; the formats and schemes it cannot run are refused by name.
  config["quantization_config"] = {{"quant_method", "fp8"},
                                   {"fmt", "e4m3"},
                                   {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {128, 128}},
                                   {"scale_fmt", "ue8m0"}};
  parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_TRUE(parsed->fp8_scale_ue8m0);
  const std::pair<const char*, const char*> refused[] = {
      {"fmt", "'quantization_config.fmt' 'e5m2' is not supported (supported: e4m3)"},
      {"activation_scheme", "'quantization_config.activation_scheme' 'e5m2' is not supported"},
      {"scale_fmt", "'quantization_config.scale_fmt' 'e5m2' is not supported"}};
  for (const auto& [field, message] : refused) {
    config["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}, {field, "e5m2"}};
    EXPECT_THAT(error_of(config), HasSubstr(message)) << field;
  }
}

TEST(ModelConfig, NonPositiveMaxPositionEmbeddingsIsRefused) {
  // Used to start a server whose every request was longer than its 0-token context.
  for (const int bad : {0, -1}) {
    Json config = fixture_config("tiny-mixtral");
    config["max_position_embeddings"] = bad;
    EXPECT_THAT(error_of(config), HasSubstr("'max_position_embeddings' must be positive, got " + std::to_string(bad)));
  }
  Json config = fixture_config("tiny-mixtral");
  config.erase("max_position_embeddings");
  auto parsed = parse_model_config(config);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->max_position_embeddings, 4096);  // absent: the default
}

// What a field must hold, to pick the values that must be refused.
enum class FieldKind {
  kRequiredPositiveInt,  // a missing or null value is refused too
  kPositiveInt,
  kNonNegativeInt,
  kPositiveNumber,
  kNumber,
  kTokenIds,
  kLayerList,
  kString,
  kBool,
};

struct FieldCase {
  const char* fixture;
  std::vector<std::string> path;  // top-level key, or {"rope_scaling", key}
  FieldKind kind;
};

// Every field parse_model_config reads, in a fixture whose family reads it.
std::vector<FieldCase> every_field() {
  std::vector<FieldCase> fields;
  const auto add = [&](const char* fixture, std::vector<std::string> path, FieldKind kind) {
    fields.push_back({fixture, std::move(path), kind});
  };
  using K = FieldKind;
  for (const char* fixture : {"tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                              "tiny-deepseek_v3", "tiny-gpt_oss", "tiny-llama4"}) {
    for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"}) {
      add(fixture, {key}, K::kRequiredPositiveInt);
    }
    for (const char* key : {"num_key_value_heads", "head_dim", "max_position_embeddings"}) {
      add(fixture, {key}, K::kPositiveInt);
    }
    for (const char* key : {"rms_norm_eps", "rope_theta"}) add(fixture, {key}, K::kPositiveNumber);
    for (const char* key : {"bos_token_id", "eos_token_id"}) add(fixture, {key}, K::kTokenIds);
    for (const char* key : {"torch_dtype", "dtype", "hidden_act"}) add(fixture, {key}, K::kString);
    add(fixture, {"tie_word_embeddings"}, K::kBool);
  }
  add("tiny-qwen3_moe", {"intermediate_size"}, K::kNonNegativeInt);
  for (const char* key : {"intermediate_size", "intermediate_size_mlp", "num_local_experts", "num_experts_per_tok",
                          "interleave_moe_layer_step", "no_rope_layer_interval"}) {
    add("tiny-llama4", {key}, K::kPositiveInt);
  }
  add("tiny-llama4", {"floor_scale"}, K::kPositiveNumber);
  add("tiny-llama4", {"use_qk_norm"}, K::kBool);
  add("tiny-llama4", {"no_rope_layers"}, K::kLayerList);
  add("tiny-mixtral", {"intermediate_size"}, K::kRequiredPositiveInt);
  add("tiny-mixtral", {"num_local_experts"}, K::kRequiredPositiveInt);
  add("tiny-mixtral", {"num_experts_per_tok"}, K::kRequiredPositiveInt);
  add("tiny-mixtral", {"sliding_window"}, K::kNonNegativeInt);
  for (const char* fixture : {"tiny-qwen2_moe", "tiny-qwen3_moe"}) {
    add(fixture, {"num_experts"}, K::kRequiredPositiveInt);
    add(fixture, {"num_experts_per_tok"}, K::kRequiredPositiveInt);
    add(fixture, {"moe_intermediate_size"}, K::kRequiredPositiveInt);
    add(fixture, {"decoder_sparse_step"}, K::kPositiveInt);
    add(fixture, {"mlp_only_layers"}, K::kLayerList);
    add(fixture, {"norm_topk_prob"}, K::kBool);
    add(fixture, {"use_sliding_window"}, K::kBool);
  }
  add("tiny-qwen2_moe", {"shared_expert_intermediate_size"}, K::kNonNegativeInt);
  add("tiny-qwen2_moe", {"qkv_bias"}, K::kBool);
  for (const char* fixture : {"tiny-deepseek_v2", "tiny-deepseek_v3"}) {
    for (const char* key : {"kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                            "num_experts_per_tok", "moe_intermediate_size"}) {
      add(fixture, {key}, K::kRequiredPositiveInt);
    }
    for (const char* key : {"n_routed_experts", "n_group", "topk_group", "moe_layer_freq"}) {
      add(fixture, {key}, K::kPositiveInt);
    }
    for (const char* key : {"intermediate_size", "q_lora_rank", "n_shared_experts", "first_k_dense_replace",
                            "num_nextn_predict_layers"}) {
      add(fixture, {key}, K::kNonNegativeInt);
    }
    add(fixture, {"routed_scaling_factor"}, K::kPositiveNumber);
    for (const char* key : {"scoring_func", "topk_method"}) add(fixture, {key}, K::kString);
    for (const char* key : {"norm_topk_prob", "attention_bias"}) add(fixture, {key}, K::kBool);
    add(fixture, {"rope_scaling", "original_max_position_embeddings"}, K::kRequiredPositiveInt);
    for (const char* key : {"factor", "beta_fast", "beta_slow", "rope_theta"}) {
      add(fixture, {"rope_scaling", key}, K::kPositiveNumber);
    }
    add(fixture, {"rope_scaling", "attention_factor"}, K::kPositiveNumber);
    for (const char* key : {"mscale", "mscale_all_dim"}) add(fixture, {"rope_scaling", key}, K::kNumber);  // 0: unset
    add(fixture, {"rope_scaling", "type"}, K::kString);
    add(fixture, {"rope_scaling", "truncate"}, K::kBool);
  }
  for (const char* key : {"intermediate_size", "num_local_experts", "num_experts_per_tok"}) {
    add("tiny-gpt_oss", {key}, K::kRequiredPositiveInt);
  }
  add("tiny-gpt_oss", {"sliding_window"}, K::kPositiveInt);
  add("tiny-gpt_oss", {"swiglu_limit"}, K::kPositiveNumber);
  add("tiny-gpt_oss", {"attention_bias"}, K::kBool);
  add("tiny-gpt_oss", {"rope_parameters", "original_max_position_embeddings"}, K::kRequiredPositiveInt);
  for (const char* key : {"factor", "beta_fast", "beta_slow", "rope_theta"}) {
    add("tiny-gpt_oss", {"rope_parameters", key}, K::kPositiveNumber);
  }
  add("tiny-gpt_oss", {"rope_parameters", "rope_type"}, K::kString);
  add("tiny-gpt_oss", {"rope_parameters", "truncate"}, K::kBool);
  return fields;
}

// Values of the wrong type, or out of range, for a field of `kind`: each must be refused.
std::vector<Json> malformed_values(FieldKind kind) {
  const Json too_big = int64_t{1} << 32;
  const Json too_small = -(int64_t{1} << 32);
  const Json uint64_max = std::numeric_limits<uint64_t>::max();
  const Json int64_min = std::numeric_limits<int64_t>::min();
  const std::vector<Json> not_numbers = {"64", "", true, false, Json::array({64}), Json::object({{"value", 64}})};
  std::vector<Json> values;
  switch (kind) {
    case FieldKind::kRequiredPositiveInt:
      values = {Json(), 0};
      [[fallthrough]];
    case FieldKind::kPositiveInt:
      if (kind == FieldKind::kPositiveInt) values = {0};
      [[fallthrough]];
    case FieldKind::kNonNegativeInt:
      values.insert(values.end(), not_numbers.begin(), not_numbers.end());
      values.insert(values.end(), {-1, 64.5, 1e300, too_big, too_small, uint64_max, int64_min});
      break;
    case FieldKind::kPositiveNumber:
      values = not_numbers;
      values.insert(values.end(), {0, -1, -1e-6, -1e300});
      break;
    case FieldKind::kNumber:
      values = not_numbers;
      break;
    case FieldKind::kTokenIds:
      values = {"1", true, Json::object(), -1, 1.5, too_big, uint64_max, Json::array({"1"}), Json::array({-1}),
                Json::array({1, too_big}), Json::array({Json::array({1})})};
      break;
    case FieldKind::kLayerList:
      values = {"0", 0, true, Json::object(), Json::array({-1}), Json::array({2}), Json::array({0.5}),
                Json::array({"0"}), Json::array({too_big}), Json::array({uint64_max}), Json::array({Json()})};
      break;
    case FieldKind::kString:
      values = {5, true, Json::array({"silu"}), Json::object({{"name", "silu"}})};
      break;
    case FieldKind::kBool:
      values = {"true", 1, 0, Json::array({true}), Json::object()};
      break;
  }
  return values;
}

TEST(ModelConfig, EveryFieldRefusesMalformedValuesByName) {
  int checked = 0;
  for (const FieldCase& field : every_field()) {
    for (const Json& value : malformed_values(field.kind)) {
      Json config = fixture_config(field.fixture);
      Json* slot = &config;
      for (const std::string& key : field.path) slot = &(*slot)[key];
      *slot = value;
      const std::string where = std::string(field.fixture) + " " + field.path.back() + " = " + value.dump();
      std::string message;
      EXPECT_NO_THROW(message = error_of(config)) << where;
      EXPECT_THAT(message, HasSubstr(field.path.back())) << where;
      ++checked;
    }
  }
  EXPECT_GT(checked, 600);
}

// Values of every JSON type, including ones no field accepts and a string that is not UTF-8
// (nlohmann's dump() throws on those; an error message must not).
std::vector<Json> odd_values() {
  return {Json(),
          "",
          "x",
          std::string("\xff\xfe", 2),
          true,
          false,
          0,
          -1,
          1,
          2,
          1.5,
          -0.0,
          1e308,
          -1e308,
          int64_t{1} << 32,
          std::numeric_limits<int64_t>::min(),
          std::numeric_limits<uint64_t>::max(),
          Json::array(),
          Json::array({1, 2}),
          Json::array({Json::array({"x"})}),
          Json::object(),
          Json::object({{"quant_method", "fp8"}, {"weight_block_size", "x"}}),
          Json::object({{"type", "yarn"}, {"factor", "x"}}),
          Json::object({{"a", Json::object({{"b", Json()}})}})};
}

TEST(ModelConfig, NoJsonInputThrows) {
  // Every key the parser reads (present in a fixture or not), every fixture's own keys, and the
  // nested dicts, set to each odd value in turn: parse_model_config returns, ok or an error.
  const std::vector<std::string> read_keys = {
      "architectures", "quantization_config", "rope_scaling", "rope_parameters", "num_nextn_predict_layers",
      "attention_factor", "head_dim", "dtype", "mlp_only_layers", "n_routed_experts", "sliding_window",
      "use_sliding_window", "attention_bias", "mlp_bias", "qkv_bias", "decoder_sparse_step", "layer_types",
      "swiglu_limit"};
  int parsed = 0;
  for (const char* fixture : {"tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                              "tiny-deepseek_v3", "tiny-gpt_oss", "tiny-llama4"}) {
    const Json original = fixture_config(fixture);
    std::vector<std::vector<std::string>> paths;
    for (const auto& [key, value] : original.items()) paths.push_back({key});
    for (const std::string& key : read_keys) paths.push_back({key});
    for (const char* rope : {"rope_scaling", "rope_parameters"}) {
      if (!original.contains(rope) || !original[rope].is_object()) continue;
      for (const auto& [key, value] : original[rope].items()) paths.push_back({rope, key});
      paths.push_back({rope, "rope_type"});
    }
    for (const auto& path : paths) {
      for (const Json& value : odd_values()) {
        Json config = original;
        Json* slot = &config;
        for (const std::string& key : path) slot = &(*slot)[key];
        *slot = value;
        EXPECT_NO_THROW(parse_model_config(config)) << fixture << " " << path.back() << " = " << value.dump();
        // The same value as an override (a merge patch: null there deletes the key).
        const Json patch = path.size() == 1 ? value : Json{{path.back(), value}};
        EXPECT_NO_THROW(parse_model_config(original, Json{{path.front(), patch}})) << fixture << " override "
                                                                                 << path.back();
        parsed += 2;
      }
    }
  }
  // Whole documents and overrides of the wrong shape.
  for (const Json& value : odd_values()) {
    EXPECT_NO_THROW(parse_model_config(value)) << value.dump();
    EXPECT_NO_THROW(parse_model_config(fixture_config("tiny-mixtral"), value)) << value.dump();
    if (!value.is_object()) {
      EXPECT_FALSE(parse_model_config(value).ok()) << value.dump();
      EXPECT_FALSE(parse_model_config(fixture_config("tiny-mixtral"), value).ok()) << value.dump();
    }
  }
  EXPECT_GT(parsed, 5000);
}

}  // namespace
}  // namespace moeserve
