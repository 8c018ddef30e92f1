// runtime/make_runner's backend choice: --device cpu and cuda as asked, --device auto picking the
// CPU for parallel layouts (and saying so), and the refusals of a CUDA choice with their messages,
// in the order the CLI has always reported them (dtype, layout, build). Runs in both builds: the
// expectations that depend on CUDA being compiled in ask cuda_compiled().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/make_runner.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

ParallelConfig layout(int tp, int dp) {
  ParallelConfig parallel;
  parallel.tensor_parallel_size = tp;
  parallel.data_parallel_size = dp;
  return parallel;
}

TEST(MakeRunner, ParsesDeviceNames) {
  EXPECT_EQ(*parse_device("auto"), Device::kAuto);
  EXPECT_EQ(*parse_device("cpu"), Device::kCpu);
  EXPECT_EQ(*parse_device("cuda"), Device::kCuda);
  EXPECT_FALSE(parse_device("tpu").ok());
}

TEST(MakeRunner, CpuIsAlwaysTheCpu) {
  for (const ParallelConfig& parallel : {layout(1, 1), layout(2, 2)}) {
    const auto choice = choose_backend(Device::kCpu, parallel, ActivationDType::kFloat16);
    ASSERT_TRUE(choice.ok()) << choice.error().message;
    EXPECT_EQ(choice->backend, Backend::kCpu);
    EXPECT_EQ(choice->reason, "--device cpu");
  }
}

TEST(MakeRunner, AutoRunsParallelLayoutsOnTheCpuAndSaysWhy) {
  const auto choice = choose_backend(Device::kAuto, layout(2, 1), ActivationDType::kAuto);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->backend, Backend::kCpu);
  EXPECT_THAT(choice->reason, HasSubstr("parallel layout"));
  EXPECT_THAT(choice->reason, HasSubstr("runs on the CPU backend today"));
}

TEST(MakeRunner, AutoWithOneRankInACpuOnlyBuildIsTheCpu) {
  if (cuda_compiled()) GTEST_SKIP() << "a CUDA build: auto depends on the GPUs visible";
  const auto choice = choose_backend(Device::kAuto, layout(1, 1), ActivationDType::kFloat16);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->backend, Backend::kCpu);
  EXPECT_THAT(choice->reason, HasSubstr("this build has no CUDA backend"));
  EXPECT_EQ(backend_names(), "cpu");
}

TEST(MakeRunner, CudaRefusalsInOrder) {
  // float16 first, even with a parallel layout; then the layout; then the build.
  auto refused = choose_backend(Device::kCuda, layout(2, 1), ActivationDType::kFloat16);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("--dtype float16: the CUDA runner computes with bf16 weights"));
  refused = choose_backend(Device::kCuda, layout(1, 2), ActivationDType::kAuto);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("--device cuda runs one rank for now"));
  const auto single = choose_backend(Device::kCuda, layout(1, 1), ActivationDType::kBFloat16);
  if (cuda_compiled()) {
    ASSERT_TRUE(single.ok()) << single.error().message;
    EXPECT_EQ(single->backend, Backend::kCuda);
  } else {
    ASSERT_FALSE(single.ok());
    EXPECT_EQ(single.error().message, "--device cuda: this moeserve was built without CUDA (no nvcc found)");
  }
}

}  // namespace
}  // namespace moeserve
