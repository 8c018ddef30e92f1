// The same code runs checkpoints of every family with shapes unlike the fixtures' (other GQA
// ratios, odd sizes, dense layers in the middle, tied embeddings, no q-LoRA / q-LoRA, more
// groups), with random weights. There is no transformers reference for these, so the checks
// are self-consistency ones that catch shape and indexing bugs: chunked prefill and
// token-by-token decode equal one full prefill, MLA's two forms agree, output is finite.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numeric>

#include "loader/dummy_weights.h"
#include "reference_data.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

struct ShapeCase {
  std::string name;
  std::string fixture;
  Json overrides;
};

std::vector<ShapeCase> cases() {
  return {
      {"mixtral_gqa3_odd", "tiny-mixtral",
       {{"hidden_size", 72}, {"num_attention_heads", 6}, {"num_key_value_heads", 2}, {"intermediate_size", 50},
        {"num_local_experts", 5}, {"num_experts_per_tok", 3}, {"num_hidden_layers", 3}, {"tie_word_embeddings", true}}},
      {"qwen2_dense_middle", "tiny-qwen2_moe",
       {{"num_hidden_layers", 4}, {"mlp_only_layers", {1, 2}}, {"num_key_value_heads", 1},
        {"shared_expert_intermediate_size", 24}, {"num_experts", 6}}},
      {"qwen3_headdim", "tiny-qwen3_moe",
       {{"head_dim", 24}, {"num_attention_heads", 8}, {"num_key_value_heads", 4}, {"num_experts", 12},
        {"num_experts_per_tok", 5}}},
      {"deepseek_v3_groups", "tiny-deepseek_v3",
       {{"num_hidden_layers", 4}, {"first_k_dense_replace", 2}, {"n_routed_experts", 24}, {"n_group", 8},
        {"topk_group", 3}, {"num_experts_per_tok", 6}, {"num_attention_heads", 3}, {"q_lora_rank", 20},
        {"kv_lora_rank", 24}, {"qk_rope_head_dim", 6}, {"qk_nope_head_dim", 10}, {"v_head_dim", 12}}},
      {"deepseek_v2_group_limited", "tiny-deepseek_v2",
       {{"topk_method", "group_limited_greedy"}, {"n_group", 4}, {"topk_group", 2}, {"num_experts_per_tok", 3},
        {"norm_topk_prob", true}, {"routed_scaling_factor", 16.0}}},
      {"llama3_rope_dense", "tiny-mixtral",
       {{"architectures", {"LlamaForCausalLM"}},
        {"rope_scaling",
         {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
          {"original_max_position_embeddings", 64}}}}},
      {"mistral_sliding_window", "tiny-mixtral",
       {{"architectures", {"MistralForCausalLM"}}, {"sliding_window", 9}}},
      {"gpt_oss_windows_gqa3", "tiny-gpt_oss",
       {{"num_hidden_layers", 3}, {"layer_types", {"full_attention", "sliding_attention", "sliding_attention"}},
        {"sliding_window", 5}, {"num_key_value_heads", 3}, {"num_local_experts", 5}, {"num_experts_per_tok", 2},
        {"intermediate_size", 40}, {"swiglu_limit", 3.0}}},
      // Llama 4 with top-2 input-scaled experts, MoE on layers 0 and 2, chunks of 7 crossed by the
      // prompt, two NoPE layers, GQA 6/3, no QK-norm (as Maverick).
      {"llama4_top2_chunk7", "tiny-llama4",
       {{"num_experts_per_tok", 2}, {"moe_layers", {0, 2}}, {"attention_chunk_size", 7}, {"num_key_value_heads", 3},
        {"no_rope_layers", {1, 0, 1, 1, 0, 1}},
        {"layer_types",
         {"chunked_attention", "full_attention", "chunked_attention", "chunked_attention", "full_attention",
          "chunked_attention"}},
        {"use_qk_norm", false}, {"floor_scale", 4}}},
  };
}

class ModelShapesTest : public ::testing::TestWithParam<ShapeCase> {
 protected:
  std::unique_ptr<CpuModel> load(MlaMode mode) {
    const Json config = Json::parse(std::ifstream(testing::fixture_model(GetParam().fixture) + "/config.json"));
    auto parsed = parse_model_config(config, GetParam().overrides);
    if (!parsed.ok()) throw std::runtime_error(parsed.error().message);
    auto model = CpuModel::load(*parsed, weights_, ModelOptions{.mla_mode = mode});
    if (!model.ok()) throw std::runtime_error(model.error().message);
    return std::move(model.value());
  }

  std::vector<int32_t> prompt(int length, int vocab) {
    std::vector<int32_t> ids(length);
    for (int i = 0; i < length; ++i) ids[i] = (i * 37 + 11) % vocab;
    return ids;
  }

  DummyWeights weights_{42};
  ThreadPool pool_{2};
  ExecContext exec_{&pool_};
};

TEST_P(ModelShapesTest, ChunkedAndTokenByTokenMatchOneShot) {
  auto model = load(MlaMode::kAuto);
  const int vocab = model->config().vocab_size;
  const std::vector<int32_t> ids = prompt(37, vocab);
  SequenceRunner one_shot(*model, exec_, 37);
  auto expected = one_shot.append(ids, true);
  ASSERT_TRUE(expected.ok());
  for (float value : std::span<const float>(expected->f32(), expected->numel())) ASSERT_TRUE(std::isfinite(value));
  for (int chunk : {1, 5, 16}) {
    SequenceRunner chunked(*model, exec_, 37);
    auto logits = chunked.append(ids, true, chunk);
    ASSERT_TRUE(logits.ok());
    EXPECT_LT(testing::max_row_relative_error(logits->f32(), expected->f32(), 37, vocab), 1e-5) << "chunk " << chunk;
  }
}

TEST_P(ModelShapesTest, MlaFormsAgree) {
  auto naive = load(MlaMode::kNaive);
  if (!naive->config().is_mla()) GTEST_SKIP() << "not an MLA model";
  auto absorbed = load(MlaMode::kAbsorbed);
  const int vocab = naive->config().vocab_size;
  const std::vector<int32_t> ids = prompt(21, vocab);
  SequenceRunner a(*naive, exec_, 21), b(*absorbed, exec_, 21);
  auto la = a.append(ids, true, 4);
  auto lb = b.append(ids, true, 4);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_LT(testing::max_row_relative_error(lb->f32(), la->f32(), 21, vocab), 1e-5);
}

// An fp8 quantization_config with random weights (--load-format dummy, which quantizes them as an
// fp8 checkpoint's would load): its Linear weights are held as fp8 (fewer bytes than the same
// config without quantization_config) and it runs a prompt to finite logits.
TEST(ModelShapesFp8Test, Fp8ConfigWithDummyWeightsHoldsFp8) {
  const Json config = Json::parse(std::ifstream(testing::fixture_model("tiny-deepseek_v3") + "/config.json"));
  const Json fp8 = {{"quantization_config",
                     {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {128, 128}}}}};
  auto parsed = parse_model_config(config, fp8);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  DummyWeights weights(1);
  ModelOptions options;
  options.precision.quantize_fp8 = true;
  auto fp8_model = CpuModel::load(*parsed, weights, options);
  ASSERT_TRUE(fp8_model.ok()) << fp8_model.error().message;
  Json with_fp8 = config;
  with_fp8.merge_patch(fp8);
  auto dropped = parse_model_config(with_fp8, {{"quantization_config", nullptr}});
  ASSERT_TRUE(dropped.ok()) << dropped.error().message;
  auto bf16_model = CpuModel::load(*dropped, weights, ModelOptions{});
  ASSERT_TRUE(bf16_model.ok()) << bf16_model.error().message;
  EXPECT_LT((*fp8_model)->weight_bytes(), (*bf16_model)->weight_bytes());
  ThreadPool pool(2);
  ExecContext exec{&pool};
  const int vocab = parsed->vocab_size;
  std::vector<int32_t> ids(13);
  for (int i = 0; i < 13; ++i) ids[i] = (i * 37 + 11) % vocab;
  SequenceRunner runner(**fp8_model, exec, 13);
  auto logits = runner.append(ids, true);
  ASSERT_TRUE(logits.ok()) << logits.error().message;
  for (int64_t i = 0; i < int64_t(13) * vocab; ++i) ASSERT_TRUE(std::isfinite(logits->f32()[i])) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ModelShapesTest, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace moeserve
