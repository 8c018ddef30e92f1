// The trained demo model (kjv-mixtral-tiny: sharded safetensors, tied embeddings, 32000-token
// vocabulary): logits of every samples.json prompt within 1e-4 of transformers, and the
// 48-token greedy continuations identical token for token.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "greedy_decode.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

class KjvTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loaded = load_model(testing::demo_model(), LoadOptions{});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    loaded_ = new LoadedModel(std::move(loaded.value()));
  }
  static void TearDownTestSuite() { delete loaded_; }

  static nlohmann::json samples() {
    return nlohmann::json::parse(std::ifstream(testing::demo_model() + "/samples.json"))["samples"];
  }

  static inline LoadedModel* loaded_ = nullptr;
  ThreadPool pool_{2};
  ExecContext exec_{&pool_};
};

TEST_F(KjvTest, ConfigIsShardedTiedMixtral) {
  const ModelConfig& config = loaded_->model->config();
  EXPECT_EQ(config.architecture, Architecture::kMixtral);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.vocab_size, 32000);
}

TEST_F(KjvTest, LogitsMatchTransformers) {
  const testing::Reference reference(testing::demo_model() + "/reference.safetensors");
  for (int j = 0; reference.has("prompt_" + std::to_string(j)); ++j) {
    const std::vector<int32_t> prompt = reference.ids("prompt_" + std::to_string(j));
    SequenceRunner runner(*loaded_->model, exec_, static_cast<int>(prompt.size()));
    auto logits = runner.append(prompt, true);
    ASSERT_TRUE(logits.ok());
    const TensorView expected = reference.tensor("logits_" + std::to_string(j));
    EXPECT_LT(testing::max_row_relative_error(logits->f32(), expected.as<float>(), expected.dim(0), expected.dim(1)),
              1e-4)
        << "prompt " << j;
  }
}

TEST_F(KjvTest, GreedyContinuationsMatchSamples) {
  for (const auto& sample : samples()) {
    const auto prompt = sample["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = sample["greedy_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(testing::greedy_continuation(*loaded_->model, exec_, prompt, static_cast<int>(expected.size())), expected)
        << sample["prompt"];
  }
}

}  // namespace
}  // namespace moeserve
