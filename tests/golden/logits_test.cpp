// Golden tests: every fixture model's logits at every position within 1e-4 relative error of
// transformers' float32 reference, and its 16 greedy tokens identical — through the same
// loader, model and paged-KV runner the CLI uses. Also: MLA's naive and absorbed forms agree,
// and chunked prefill / token-by-token decode give the same logits as one full prefill.
#include <gtest/gtest.h>

#include "greedy_decode.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

using testing::Reference;

constexpr double kTolerance = 1e-4;
constexpr int kNumPrompts = 5;
constexpr int kGreedyTokens = 16;

struct Fixture {
  LoadedModel loaded;
  Reference reference;
};

Fixture load_fixture(const std::string& name, MlaMode mla_mode = MlaMode::kAuto) {
  const std::string dir = testing::fixture_model(name);
  LoadOptions options;
  options.model.mla_mode = mla_mode;
  auto loaded = load_model(dir, options);
  if (!loaded.ok()) throw std::runtime_error(loaded.error().message);
  return Fixture{std::move(loaded.value()), Reference(dir + "/reference.safetensors")};
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  ThreadPool pool_{2};
  ExecContext exec_{&pool_};
};

TEST_P(GoldenTest, LogitsMatchTransformersAtEveryPosition) {
  Fixture fixture = load_fixture(GetParam());
  const int vocab = fixture.loaded.model->config().vocab_size;
  for (int j = 0; j < kNumPrompts; ++j) {
    const std::vector<int32_t> prompt = fixture.reference.ids("prompt_" + std::to_string(j));
    SequenceRunner runner(*fixture.loaded.model, exec_, static_cast<int>(prompt.size()));
    auto logits = runner.append(prompt, /*all_logits=*/true);
    ASSERT_TRUE(logits.ok()) << logits.error().message;
    const TensorView expected = fixture.reference.tensor("logits_" + std::to_string(j));
    ASSERT_EQ(expected.dim(0), static_cast<int64_t>(prompt.size()));
    ASSERT_EQ(expected.dim(1), vocab);
    const double error = testing::max_row_relative_error(logits->f32(), expected.as<float>(), expected.dim(0), vocab);
    EXPECT_LT(error, kTolerance) << GetParam() << " prompt " << j;
  }
}

TEST_P(GoldenTest, GreedyTokensMatchTransformers) {
  Fixture fixture = load_fixture(GetParam());
  for (int j = 0; j < kNumPrompts; ++j) {
    const std::vector<int32_t> prompt = fixture.reference.ids("prompt_" + std::to_string(j));
    const std::vector<int32_t> expected = fixture.reference.ids("greedy_" + std::to_string(j));
    EXPECT_EQ(testing::greedy_continuation(*fixture.loaded.model, exec_, prompt, kGreedyTokens), expected)
        << GetParam() << " prompt " << j;
  }
}

TEST_P(GoldenTest, ChunkedPrefillAndDecodeMatchOneShotPrefill) {
  Fixture fixture = load_fixture(GetParam());
  const int vocab = fixture.loaded.model->config().vocab_size;
  const std::vector<int32_t> prompt = fixture.reference.ids("prompt_3");  // 64 tokens
  const TensorView expected = fixture.reference.tensor("logits_3");
  for (int chunk : {1, 7, 16}) {
    SequenceRunner runner(*fixture.loaded.model, exec_, static_cast<int>(prompt.size()));
    auto logits = runner.append(prompt, /*all_logits=*/true, chunk);
    ASSERT_TRUE(logits.ok()) << logits.error().message;
    EXPECT_LT(testing::max_row_relative_error(logits->f32(), expected.as<float>(), expected.dim(0), vocab), kTolerance)
        << GetParam() << " chunk " << chunk;
  }
}

// The -fp8 fixtures are block-scaled F8_E4M3 checkpoints whose reference ran on the exactly
// dequantized weights: the CPU holds them as fp8 and must match as tightly as bf16. The -bf16
// ones are the float32 fixtures' weights rounded to bf16, with their own reference.
INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3", "tiny-deepseek_v3-fp8", "tiny-qwen3_moe-fp8",
                                           "tiny-qwen3_moe-fp8-b128", "tiny-gpt_oss", "tiny-gpt_oss-mxfp4",
                                           "tiny-gpt_oss-bf16", "tiny-llama4", "tiny-llama4-bf16",
                                           "tiny-deepseek_v32"));

class MlaFormsTest : public GoldenTest {};

// The naive (up-projected) and weight-absorbed MLA forms compute the same function.
TEST_P(MlaFormsTest, NaiveAndAbsorbedAgree) {
  Fixture naive = load_fixture(GetParam(), MlaMode::kNaive);
  Fixture absorbed = load_fixture(GetParam(), MlaMode::kAbsorbed);
  const int vocab = naive.loaded.model->config().vocab_size;
  const std::vector<int32_t> prompt = naive.reference.ids("prompt_4");
  SequenceRunner naive_runner(*naive.loaded.model, exec_, static_cast<int>(prompt.size()));
  SequenceRunner absorbed_runner(*absorbed.loaded.model, exec_, static_cast<int>(prompt.size()));
  auto naive_logits = naive_runner.append(prompt, true, 5);
  auto absorbed_logits = absorbed_runner.append(prompt, true, 5);
  ASSERT_TRUE(naive_logits.ok() && absorbed_logits.ok());
  EXPECT_LT(testing::max_row_relative_error(absorbed_logits->f32(), naive_logits->f32(), prompt.size(), vocab), 1e-5);
  const TensorView expected = naive.reference.tensor("logits_4");
  EXPECT_LT(testing::max_row_relative_error(absorbed_logits->f32(), expected.as<float>(), prompt.size(), vocab),
            kTolerance);
}

// tiny-deepseek_v32: its first chunk of 5 rows (context 5, within index_topk 6) takes the plain
// form in naive mode, over cache entries that carry the index key after the latent.
INSTANTIATE_TEST_SUITE_P(MlaFixtures, MlaFormsTest,
                         ::testing::Values("tiny-deepseek_v2", "tiny-deepseek_v3", "tiny-deepseek_v3-fp8",
                                           "tiny-deepseek_v32"));

}  // namespace
}  // namespace moeserve
