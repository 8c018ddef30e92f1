// Perplexity golden test: moeserve's perplexity (runtime/perplexity.h through a SequenceRunner,
// the path `moeserve perplexity` takes) over each reference prompt of every fixture model and of
// the trained kjv-mixtral-tiny equals the perplexity of the same tokens computed from
// transformers' float32 logits in reference.safetensors, within 1e-4 relative. One runner serves
// all of a model's prompts, reset between them, as the command reuses it window after window.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/perplexity.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

constexpr double kRelativeTolerance = 1e-4;

// −log softmax(row)[target] in long double, written out here rather than through token_nll, so
// the reference side shares no code with what it checks. `row`: float32 [vocab].
long double reference_nll(const float* row, int64_t vocab, int32_t target) {
  long double max = row[0];
  for (int64_t i = 1; i < vocab; ++i) max = std::max(max, static_cast<long double>(row[i]));
  long double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<long double>(row[i]) - max);
  return std::log(sum) + max - row[target];
}

struct ReferencePerplexity {
  int64_t count = 0;
  double mean_nll = 0.0;
};

// Tokens 1..T-1 of `prompt` [T], each scored by the reference logits row before it; `logits`:
// float32 [T, vocab].
ReferencePerplexity reference_perplexity(const std::vector<int32_t>& prompt, const TensorView& logits) {
  long double total = 0;
  const int64_t vocab = logits.dim(1);
  for (size_t i = 1; i < prompt.size(); ++i)
    total += reference_nll(logits.as<float>() + (i - 1) * vocab, vocab, prompt[i]);
  const int64_t count = static_cast<int64_t>(prompt.size()) - 1;
  return {count, static_cast<double>(total / count)};
}

class PerplexityGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  ThreadPool pool_{2};
  ExecContext exec_{&pool_};
};

TEST_P(PerplexityGoldenTest, MatchesTransformersLogits) {
  const std::string dir = GetParam() == "kjv-mixtral-tiny" ? testing::demo_model() : testing::fixture_model(GetParam());
  auto loaded = load_model(dir, LoadOptions{});
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  const testing::Reference reference(dir + "/reference.safetensors");
  std::vector<std::vector<int32_t>> prompts;
  for (int j = 0; reference.has("prompt_" + std::to_string(j)); ++j) {
    prompts.push_back(reference.ids("prompt_" + std::to_string(j)));
  }
  int max_len = 0;
  for (const auto& prompt : prompts) max_len = std::max(max_len, static_cast<int>(prompt.size()));
  SequenceRunner runner(*loaded->model, exec_, max_len);
  const WindowRunner run = sequence_window_runner(runner);
  int checked = 0;
  // Longest first, so a reset runner's later, shorter prompts sit on KV entries of older ones.
  std::vector<int> order(prompts.size());
  for (size_t j = 0; j < order.size(); ++j) order[j] = static_cast<int>(j);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return prompts[a].size() > prompts[b].size(); });
  for (int j : order) {
    const std::vector<int32_t>& prompt = prompts[j];  // [T], as given (the kjv prompts start with BOS)
    if (prompt.size() < 2) continue;
    const int length = static_cast<int>(prompt.size());
    // One window of the whole prompt, no BOS added: tokens 1..T-1 scored, as on the reference side.
    auto ours = compute_perplexity(prompt, {.ctx_size = length, .stride = length - 1}, run);
    ASSERT_TRUE(ours.ok()) << ours.error().message;
    const ReferencePerplexity expected = reference_perplexity(prompt, reference.tensor("logits_" + std::to_string(j)));
    EXPECT_EQ(ours->stats.count, expected.count);
    const double expected_ppl = std::exp(expected.mean_nll);
    EXPECT_NEAR(ours->stats.perplexity() / expected_ppl, 1.0, kRelativeTolerance)
        << GetParam() << " prompt " << j << ": moeserve " << ours->stats.perplexity() << ", transformers "
        << expected_ppl;
    ++checked;
  }
  EXPECT_GE(checked, 4);
}

INSTANTIATE_TEST_SUITE_P(Models, PerplexityGoldenTest,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3", "kjv-mixtral-tiny"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace moeserve
