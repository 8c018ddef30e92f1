// Model-level backend parity (issue 19): the same random model (each fixture's checkpoint: random
// weights, scaled so routing is decisive) from one host WeightSource, loaded by the CPU decoder
// and by the CUDA runner; a random prompt's prefill logits at every position and then
// token-by-token decode logits compared row by row. The CPU backend is
// the spec: the CUDA runner runs in its float32-like precision (split bf16), so the two must agree
// to the CPU golden tolerance, and greedy choices must be identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "kernels/context.h"
#include "loader/checkpoint.h"
#include "runtime/cpu_model.h"
#include "reference_data.h"
#include "backend/cuda/cuda_runner_device.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

constexpr double kTolerance = 1e-4;  // the CPU golden tolerance against transformers
constexpr int kPromptTokens = 37;    // spans three KV blocks of 16, the last one partial
constexpr int kDecodeTokens = 8;

int argmax(const float* row, int vocab) { return static_cast<int>(std::max_element(row, row + vocab) - row); }

class BackendParity : public ::testing::TestWithParam<std::string> {};

TEST_P(BackendParity, CudaLogitsEqualCpuLogitsForTheSameRandomModel) {
  const std::string dir = testing::fixture_model(GetParam());
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  const int vocab = config->vocab_size;
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  const Checkpoint& weights = *checkpoint;
  // The CPU rounds a float32 checkpoint's weights to bf16 as the CUDA loader does (--dtype
  // bfloat16), so both run the same weights.
  ModelOptions cpu_options;
  cpu_options.precision.f32 = WeightPrecision::Float32::kRound;
  auto cpu_model = CpuModel::load(*config, weights, cpu_options);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.error().message;
  auto cuda_runner = make_cuda_runner(*config, &weights, 0,
                                      CudaDeviceOptions{.prefill_precision = cuda::PrefillPrecision::kSplitBf16},
                                      ModelRunnerOptions{.num_kv_blocks = 8, .max_num_batched_tokens = 256});
  ASSERT_TRUE(cuda_runner.ok()) << cuda_runner.error().message;

  ThreadPool pool(2);
  ExecContext exec(&pool);
  const int capacity = kPromptTokens + kDecodeTokens;
  SequenceRunner cpu(**cpu_model, exec, capacity);
  SequenceRunner gpu(**cuda_runner, capacity);

  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  std::vector<int32_t> prompt(kPromptTokens);
  for (int32_t& id : prompt) id = token(rng);
  auto cpu_logits = cpu.append(prompt, /*all_logits=*/true);
  auto gpu_logits = gpu.append(prompt, /*all_logits=*/true);
  ASSERT_TRUE(cpu_logits.ok()) << cpu_logits.error().message;
  ASSERT_TRUE(gpu_logits.ok()) << gpu_logits.error().message;
  const double prefill_error =
      testing::max_row_relative_error(gpu_logits->f32(), cpu_logits->f32(), kPromptTokens, vocab);
  EXPECT_LT(prefill_error, kTolerance) << "prefill";

  int32_t next = argmax(cpu_logits->f32() + int64_t{kPromptTokens - 1} * vocab, vocab);
  double decode_error = 0.0;
  for (int step = 0; step < kDecodeTokens; ++step) {
    const std::vector<int32_t> ids{next};
    auto cpu_row = cpu.append(ids, false);
    auto gpu_row = gpu.append(ids, false);
    ASSERT_TRUE(cpu_row.ok() && gpu_row.ok());
    decode_error = std::max(decode_error, testing::max_row_relative_error(gpu_row->f32(), cpu_row->f32(), 1, vocab));
    next = argmax(cpu_row->f32(), vocab);
    // Greedy choices are equal unless the CPU's own top two are closer than the tolerance (a
    // tie that any rounding may break).
    const int gpu_choice = argmax(gpu_row->f32(), vocab);
    const float* row = cpu_row->f32();
    const float scale = std::abs(*std::max_element(row, row + vocab, [](float a, float b) { return std::abs(a) < std::abs(b); }));
    if (gpu_choice != next) {
      EXPECT_LT(row[next] - row[gpu_choice], kTolerance * scale) << "decode step " << step;
    }
  }
  EXPECT_LT(decode_error, kTolerance) << "decode";
  std::printf("%s: max row relative error prefill %.3g, decode %.3g\n", GetParam().c_str(), prefill_error,
              decode_error);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BackendParity,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3", "tiny-gpt_oss", "tiny-llama4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace moeserve
