// Golden tests of the CUDA runner: every fixture model's logits within 2e-2 relative of
// transformers' float32 reference (bf16 GEMM inputs for prefill-sized steps), greedy tokens
// equal wherever the reference's margin exceeds the error measured on that model, chunked
// prefill and decode agree with one-shot prefill, several sequences batched into one step give
// each its own logits, and the KJV demo model's greedy continuations equal transformers' exactly
// (one sequence at a time from the copied logits, and all at once from the device's argmax with
// the batch shrinking as sequences finish, through CUDA graphs and eagerly).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "loader/checkpoint.h"
#include "reference_data.h"
#include "backend/cuda/cuda_runner_device.h"

namespace moeserve {
namespace {

using testing::Reference;

constexpr double kTolerance = 2e-2;

std::unique_ptr<ModelRunner> open_runner(const std::string& dir, int max_batched_tokens = 8192,
                                         cuda::PrefillPrecision precision = cuda::PrefillPrecision::kSplitBf16,
                                         bool enforce_eager = false) {
  auto config = load_model_config(dir);
  if (!config.ok()) throw std::runtime_error(config.error().message);
  auto checkpoint = Checkpoint::open(dir);
  if (!checkpoint.ok()) throw std::runtime_error(checkpoint.error().message);
  auto runner = make_cuda_runner(*config, &checkpoint.value(), 0,
                                 CudaDeviceOptions{.prefill_precision = precision, .enforce_eager = enforce_eager},
                                 ModelRunnerOptions{.num_kv_blocks = 96, .max_num_batched_tokens = max_batched_tokens});
  if (!runner.ok()) throw std::runtime_error(runner.error().message);
  return std::move(runner.value());
}

// One sequence over blocks [first_block, first_block + n) in reverse order (so a kernel that
// ignored the block table would read the wrong memory).
class Sequence {
 public:
  Sequence(ModelRunner& runner, int first_block, int max_tokens) : runner_(runner) {
    const int blocks = (max_tokens + runner.block_size() - 1) / runner.block_size();
    table_.resize(blocks);
    std::iota(table_.rbegin(), table_.rend(), first_block);
  }
  RunnerSeq step(std::span<const int32_t> ids, bool all_logits) {
    const int computed = static_cast<int>(tokens_.size());
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
    return RunnerSeq{.tokens = tokens_,
                     .num_computed = computed,
                     .num_new = static_cast<int>(ids.size()),
                     .samples = true,
                     .all_logits = all_logits,
                     .block_table = table_};
  }
  // Appends ids in chunks of `chunk` (0: all at once); logits of every row or of the last.
  Tensor append(std::span<const int32_t> ids, bool all_logits, int chunk = 0) {
    const int vocab = runner_.config().vocab_size;
    std::vector<float> rows;
    const int step_size = chunk > 0 ? chunk : static_cast<int>(ids.size());
    for (size_t done = 0; done < ids.size();) {
      const size_t count = std::min<size_t>(step_size, ids.size() - done);
      const RunnerSeq seq = step(ids.subspan(done, count), all_logits);
      const Tensor logits = runner_.execute(std::span<const RunnerSeq>(&seq, 1));
      if (all_logits || done + count == ids.size())
        rows.insert(rows.end(), logits.f32(), logits.f32() + logits.numel());
      done += count;
    }
    Tensor out(DType::kF32, Shape{static_cast<int64_t>(rows.size() / vocab), vocab});
    std::copy(rows.begin(), rows.end(), out.f32());
    return out;
  }

 private:
  ModelRunner& runner_;
  std::vector<int32_t> table_;
  std::vector<int32_t> tokens_;
};

double max_abs_difference(const float* a, const float* b, int64_t count) {
  double worst = 0.0;
  for (int64_t i = 0; i < count; ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

class CudaGoldenTest : public ::testing::TestWithParam<std::string> {};

// Both prefill precisions: split bf16 (the default, float32-like) and plain bf16 GEMM inputs.
// bound_logits: every row within kTolerance (else the error is only measured and printed).
void check_logits_and_greedy(const std::string& name, cuda::PrefillPrecision precision, bool bound_logits = true);

TEST_P(CudaGoldenTest, LogitsAndGreedyTokensMatchTransformers) {
  check_logits_and_greedy(GetParam(), cuda::PrefillPrecision::kSplitBf16);
}

// Known failure, kept visible: with plain bf16 activations in the prefill GEMMs (--dtype bfloat16)
// tiny-deepseek_v3 measured 0.377 and tiny-mixtral 0.0485 relative error (H200, 2026-12-03), over
// the 2e-2 bound; the other three fixtures pass (0.006-0.017). The large rows are routing (and for
// tiny-mixtral one attention) decisions that float32 itself nearly ties: tiny-deepseek_v3's 160-token
// prompt has tokens whose 4th and 5th expert scores differ by 3.6e-7 and 1.2e-4 on the float32 CPU
// engine, ~10 tokens under 4e-3, so any bf16 rounding flips some; 18 of its 247 rows exceed 2e-2,
// the first at row 0 of the 17-token prompt. tiny-mixtral's one row (67 of 160) goes away when only
// the attention is split (0.0056). The trained KJV model passes in bf16 (CudaKjvTest/Bf16). Run
// with --gtest_also_run_disabled_tests.
TEST_P(CudaGoldenTest, DISABLED_LogitsAndGreedyTokensMatchTransformersPlainBf16) {
  check_logits_and_greedy(GetParam(), cuda::PrefillPrecision::kBf16);
}

// bf16 activations, what --dtype auto runs on a bf16 checkpoint (vLLM's numerics): the greedy
// continuations equal the reference's except where the reference's top-2 margin at the first
// difference is under twice the logit error measured on that model (the near-ties above); the
// test prints how many continuations diverged that way.
TEST_P(CudaGoldenTest, Bf16GreedyTokensMatchTransformersWhereTheMarginAllows) {
  check_logits_and_greedy(GetParam(), cuda::PrefillPrecision::kBf16, /*bound_logits=*/false);
}

void check_logits_and_greedy(const std::string& name, cuda::PrefillPrecision precision, bool bound_logits) {
  auto GetParam = [&] { return name; };
  const std::string dir = testing::fixture_model(name);
  const Reference reference(dir + "/reference.safetensors");
  auto runner = open_runner(dir, 8192, precision);
  const int vocab = runner->config().vocab_size;
  double worst_relative = 0.0, worst_abs = 0.0;
  for (int j = 0; j < 5; ++j) {
    const auto prompt = reference.ids("prompt_" + std::to_string(j));
    Sequence seq(*runner, 0, static_cast<int>(prompt.size()));
    const Tensor logits = seq.append(prompt, true);
    const TensorView expected = reference.tensor("logits_" + std::to_string(j));
    const double error = testing::max_row_relative_error(logits.f32(), expected.as<float>(), expected.dim(0), vocab);
    worst_relative = std::max(worst_relative, error);
    worst_abs = std::max(worst_abs, max_abs_difference(logits.f32(), expected.as<float>(), expected.numel()));
    if (bound_logits) {
      EXPECT_LT(error, kTolerance) << GetParam() << " prompt " << j;
    }
  }
  std::printf("%s (%s): worst row relative error %.3g, worst abs logit error %.3g\n", GetParam().c_str(),
              precision == cuda::PrefillPrecision::kBf16 ? "bf16" : "split bf16", worst_relative, worst_abs);
  int diverged = 0;
  for (int j = 0; j < 5; ++j) {
    const auto prompt = reference.ids("prompt_" + std::to_string(j));
    const auto expected = reference.ids("greedy_" + std::to_string(j));
    const TensorView margins = reference.tensor("greedy_margin_" + std::to_string(j));
    Sequence seq(*runner, 0, static_cast<int>(prompt.size() + expected.size()));
    Tensor logits = seq.append(prompt, false);
    for (size_t step = 0; step < expected.size(); ++step) {
      const int32_t token = testing::argmax(logits.f32(), vocab);
      if (token != expected[step]) {
        // Allowed only where the reference itself nearly tied: margin under twice the error.
        EXPECT_LT(margins.as<float>()[step], 2.0 * worst_abs)
            << GetParam() << " prompt " << j << " step " << step << ": " << token << " vs " << expected[step];
        ++diverged;
        break;  // the continuations diverge from here
      }
      if (step + 1 < expected.size()) logits = seq.append(std::span<const int32_t>(&token, 1), false);
    }
  }
  std::printf("%s (%s): %d of 5 greedy continuations diverged where the reference's margin was under the error\n",
              GetParam().c_str(), precision == cuda::PrefillPrecision::kBf16 ? "bf16" : "split bf16", diverged);
}

TEST_P(CudaGoldenTest, ChunkedPrefillAndDecodeMatchReference) {
  const std::string dir = testing::fixture_model(GetParam());
  const Reference reference(dir + "/reference.safetensors");
  auto runner = open_runner(dir);
  const int vocab = runner->config().vocab_size;
  const auto prompt = reference.ids("prompt_3");  // 64 tokens
  const TensorView expected = reference.tensor("logits_3");
  for (int chunk : {1, 7, 16, 17}) {
    Sequence seq(*runner, 10, static_cast<int>(prompt.size()));
    const Tensor logits = seq.append(prompt, true, chunk);
    EXPECT_LT(testing::max_row_relative_error(logits.f32(), expected.as<float>(), expected.dim(0), vocab), kTolerance)
        << GetParam() << " chunk " << chunk;
  }
}

// All five prompts in one step (and again split by a small token budget): each sequence's
// last-row logits equal its reference row.
TEST_P(CudaGoldenTest, BatchedSequencesEachMatchTheirReference) {
  const std::string dir = testing::fixture_model(GetParam());
  const Reference reference(dir + "/reference.safetensors");
  for (int budget : {8192, 50}) {
    auto runner = open_runner(dir, budget);
    const int vocab = runner->config().vocab_size;
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<RunnerSeq> step;
    std::vector<std::vector<int32_t>> prompts;
    int first_block = 0;
    for (int j = 0; j < 5; ++j) prompts.push_back(reference.ids("prompt_" + std::to_string(j)));
    for (int j = 0; j < 5; ++j) {
      seqs.push_back(std::make_unique<Sequence>(*runner, first_block, static_cast<int>(prompts[j].size())));
      first_block += (static_cast<int>(prompts[j].size()) + 15) / 16;
      step.push_back(seqs.back()->step(prompts[j], false));
    }
    const Tensor logits = runner->execute(step);
    ASSERT_EQ(logits.shape()[0], 5);
    for (int j = 0; j < 5; ++j) {
      const TensorView expected = reference.tensor("logits_" + std::to_string(j));
      const float* last = expected.as<float>() + (expected.dim(0) - 1) * vocab;
      EXPECT_LT(testing::max_row_relative_error(logits.f32() + j * vocab, last, 1, vocab), kTolerance)
          << GetParam() << " prompt " << j << " budget " << budget;
    }
    const ExpertLoad& load = runner->expert_load();
    if (runner->config().moe) {
      int64_t total = 0;
      for (int64_t c : load.counts) total += c;
      int64_t tokens = 0;
      for (const auto& p : prompts) tokens += static_cast<int64_t>(p.size());
      int moe_layers = 0;
      for (bool is_moe : runner->config().layer_is_moe) moe_layers += is_moe;
      EXPECT_EQ(total, tokens * runner->config().moe->top_k * moe_layers);
    }
  }
}

// The bf16 checkpoints only: CUDA holds bf16 weights, so a float32 fixture's transformers
// reference (tiny-gpt_oss, tiny-llama4: weights that bf16 rounding moves by 0.42 and 0.020
// relative in the logits of prompt_3, on the CPU too, `moeserve logits --dtype bfloat16`) does
// not apply; their -bf16 copies (tools/make_bf16_variant.py) carry a reference on the rounded
// weights. tiny-gpt_oss-mxfp4 is GPT-OSS in bf16 with its experts in MXFP4 (held as such on CUDA);
// the -fp8 fixtures are block-scaled FP8 checkpoints, held as FP8 (their reference: transformers
// on the exactly dequantized weights).
INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGoldenTest,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3", "tiny-deepseek_v32", "tiny-gpt_oss-mxfp4",
                                           "tiny-gpt_oss-bf16", "tiny-llama4-bf16", "tiny-deepseek_v3-fp8",
                                           "tiny-qwen3_moe-fp8", "tiny-qwen3_moe-fp8-b128"));

// In both prefill precisions: the trained model's logits stay within 2e-2 with bf16 GEMM inputs
// too (--dtype bfloat16), and its greedy continuations stay exact.
class CudaKjvTest : public ::testing::TestWithParam<cuda::PrefillPrecision> {};

TEST_P(CudaKjvTest, LogitsAndGreedyContinuationsMatchTransformers) {
  auto runner = open_runner(testing::demo_model(), 8192, GetParam());
  const int vocab = runner->config().vocab_size;
  const Reference reference(testing::demo_model() + "/reference.safetensors");
  double worst = 0.0;
  for (int j = 0; reference.has("prompt_" + std::to_string(j)); ++j) {
    const auto prompt = reference.ids("prompt_" + std::to_string(j));
    Sequence seq(*runner, 0, static_cast<int>(prompt.size()));
    const Tensor logits = seq.append(prompt, true);
    const TensorView expected = reference.tensor("logits_" + std::to_string(j));
    const double error = testing::max_row_relative_error(logits.f32(), expected.as<float>(), expected.dim(0), vocab);
    worst = std::max(worst, error);
    EXPECT_LT(error, kTolerance) << "prompt " << j;
  }
  std::printf("kjv-mixtral-tiny: worst row relative error %.3g\n", worst);
  const auto samples = nlohmann::json::parse(std::ifstream(testing::demo_model() + "/samples.json"))["samples"];
  for (const auto& sample : samples) {
    const auto prompt = sample["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = sample["greedy_ids"].get<std::vector<int32_t>>();
    Sequence seq(*runner, 0, static_cast<int>(prompt.size() + expected.size()));
    Tensor logits = seq.append(prompt, false);
    std::vector<int32_t> generated;
    while (generated.size() < expected.size()) {
      generated.push_back(testing::argmax(logits.f32(), vocab));
      logits = seq.append(std::span<const int32_t>(&generated.back(), 1), false);
    }
    EXPECT_EQ(generated, expected) << sample["prompt"];
  }
}

// The start-up profile run (as vLLM's): the largest step — max_num_batched_tokens rows, not a
// multiple of the block size, every row's logits — ran inside the reserved workspace before the
// KV cache was sized, and left no expert counts behind. (Every other test here runs its runner
// after that pass, so a pass that disturbed the cache or the metadata would fail them.)
TEST(CudaRunnerStartupTest, ProfileRunsTheLargestStepInsideTheWorkspace) {
  constexpr int kTokens = 1000;
  auto runner = open_runner(testing::demo_model(), kTokens);
  const size_t logits_bytes = size_t(kTokens) * runner->config().vocab_size * sizeof(float);
  const CudaRunnerDevice& device = cuda_device(*runner);
  EXPECT_GT(device.workspace_peak(), logits_bytes);
  EXPECT_LE(device.workspace_peak(), device.workspace_capacity());
  const ExpertLoad& load = runner->expert_load();
  ASSERT_FALSE(load.counts.empty());
  EXPECT_TRUE(std::all_of(load.counts.begin(), load.counts.end(), [](int64_t c) { return c == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaKjvTest,
                         ::testing::Values(cuda::PrefillPrecision::kSplitBf16, cuda::PrefillPrecision::kBf16),
                         [](const auto& info) {
                           return info.param == cuda::PrefillPrecision::kBf16 ? "Bf16" : "SplitBf16";
                         });

// Every sample decoded in one batch, greedy on the device (a greedy TokenChoice: what the engine
// asks for greedy requests), sequences leaving the batch as they reach their reference length, so decode
// steps of several batch sizes run (each captured once, then replayed).
std::vector<std::vector<int32_t>> batched_device_greedy(bool enforce_eager) {
  auto runner = open_runner(testing::demo_model(), 8192, cuda::PrefillPrecision::kSplitBf16, enforce_eager);
  const auto samples = nlohmann::json::parse(std::ifstream(testing::demo_model() + "/samples.json"))["samples"];
  std::vector<std::vector<int32_t>> tokens, tables, generated(samples.size());
  std::vector<size_t> wanted;
  for (size_t s = 0; s < samples.size(); ++s) {
    tokens.push_back(samples[s]["prompt_ids"].get<std::vector<int32_t>>());
    wanted.push_back(samples[s]["greedy_ids"].size() - 6 * s);  // 48, 42, ...: the batch shrinks
    const int blocks = int(tokens.back().size() + wanted.back() + 15) / 16;
    tables.emplace_back(blocks);
    std::iota(tables.back().rbegin(), tables.back().rend(), int(s) * 12);
    tokens.back().reserve(tokens.back().size() + wanted.back());
  }
  std::vector<size_t> live(samples.size());
  std::iota(live.begin(), live.end(), 0);
  std::vector<int> computed(samples.size(), 0);
  TokenChoice greedy;
  greedy.params.temperature = 0.0f;
  while (!live.empty()) {
    std::vector<RunnerSeq> step;
    for (size_t s : live) {
      step.push_back(RunnerSeq{.tokens = tokens[s],
                               .num_computed = computed[s],
                               .num_new = int(tokens[s].size()) - computed[s],
                               .samples = true,
                               .choice = &greedy,
                               .block_table = tables[s]});
    }
    runner->execute(step);
    const std::span<const int32_t> argmax = runner->picked_tokens();
    EXPECT_EQ(argmax.size(), live.size());
    std::vector<size_t> still;
    for (size_t i = 0; i < live.size(); ++i) {
      const size_t s = live[i];
      computed[s] = int(tokens[s].size());
      generated[s].push_back(argmax[i]);
      tokens[s].push_back(argmax[i]);
      if (generated[s].size() < wanted[s]) still.push_back(s);
    }
    live = still;
  }
  // One graph per decode batch size (6 down to 1); none when eager.
  EXPECT_EQ(cuda_device(*runner).num_graphs(), enforce_eager ? 0u : samples.size());
  return generated;
}

TEST(CudaKjvGraphsTest, BatchedDeviceGreedyMatchesTransformersWithAndWithoutGraphs) {
  const auto samples = nlohmann::json::parse(std::ifstream(testing::demo_model() + "/samples.json"))["samples"];
  const auto graphs = batched_device_greedy(false);
  const auto eager = batched_device_greedy(true);
  for (size_t s = 0; s < samples.size(); ++s) {
    auto expected = samples[s]["greedy_ids"].get<std::vector<int32_t>>();
    expected.resize(graphs[s].size());
    EXPECT_EQ(graphs[s], expected) << samples[s]["prompt"];
    EXPECT_EQ(eager[s], expected) << samples[s]["prompt"];
  }
}

}  // namespace
}  // namespace moeserve
