// runtime/make_runner's backend choice: --device cpu and cuda as asked, --device auto picking the
// CPU for the parallel layouts CUDA ranks do not run yet (and saying so), and the refusals of a CUDA choice with their messages,
// in the order the CLI has always reported them (dtype, layout, build). Runs in both builds: the
// expectations that depend on CUDA being compiled in ask cuda_compiled().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/make_runner.h"
#include "unit/catalog_config.h"

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
  const auto choice = choose_backend(Device::kCpu, ActivationDType::kFloat16);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->backend, Backend::kCpu);
  EXPECT_EQ(choice->reason, "--device cpu");
}

// --device cuda runs where the build has CUDA, whatever the layout; a CPU-only build refuses it
// and auto takes the CPU, saying why.
TEST(MakeRunner, CudaWhereBuiltWhateverTheLayout) {
  const auto choice = choose_backend(Device::kCuda, ActivationDType::kAuto);
  if (cuda_compiled()) {
    ASSERT_TRUE(choice.ok()) << choice.error().message;
    EXPECT_EQ(choice->backend, Backend::kCuda);
  } else {
    ASSERT_FALSE(choice.ok());
    EXPECT_EQ(choice.error().message, "--device cuda: this moeserve was built without CUDA (no nvcc found)");
    const auto automatic = choose_backend(Device::kAuto, ActivationDType::kAuto);
    ASSERT_TRUE(automatic.ok()) << automatic.error().message;
    EXPECT_EQ(automatic->backend, Backend::kCpu);
    EXPECT_THAT(automatic->reason, HasSubstr("this build has no CUDA backend"));
  }
}

TEST(MakeRunner, AutoWithOneRankInACpuOnlyBuildIsTheCpu) {
  if (cuda_compiled()) GTEST_SKIP() << "a CUDA build: auto depends on the GPUs visible";
  const auto choice = choose_backend(Device::kAuto, ActivationDType::kFloat16);
  ASSERT_TRUE(choice.ok()) << choice.error().message;
  EXPECT_EQ(choice->backend, Backend::kCpu);
  EXPECT_THAT(choice->reason, HasSubstr("this build has no CUDA backend"));
  EXPECT_EQ(backend_names(), "cpu");
}

TEST(MakeRunner, CudaRefusalsInOrder) {
  // float16 first, then the build.
  const auto refused = choose_backend(Device::kCuda, ActivationDType::kFloat16);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("--dtype float16: the CUDA runner computes with bf16 weights"));
  const auto single = choose_backend(Device::kCuda, ActivationDType::kBFloat16);
  if (cuda_compiled()) {
    ASSERT_TRUE(single.ok()) << single.error().message;
    EXPECT_EQ(single->backend, Backend::kCuda);
  } else {
    ASSERT_FALSE(single.ok());
    EXPECT_EQ(single.error().message, "--device cuda: this moeserve was built without CUDA (no nvcc found)");
  }
}

// A node's share of a CPU deployment in host memory (the leader's check, and a --headless
// node's of its own): only this node's replicas' KV blocks and their part of the weights (all of
// them per replica without expert parallelism, their share of one copy with it); refused with
// the fix when the host has less available.
TEST(MakeRunner, CpuNodeMemoryCountsThisNodesReplicas) {
  const auto config = load_model_config(MOESERVE_TEST_DATA_DIR "/models/tiny-mixtral");
  ASSERT_TRUE(config.ok()) << config.error().message;
  const plan::MemoryModel memory(*config);
  const LoadOptions load;
  const int64_t blocks = 100;
  const int block_size = 16;
  const int64_t kv_per_replica = blocks * block_size * memory.cpu_replica_kv_bytes_per_token(1);
  const auto bf16 = static_cast<double>(memory.weight_bytes(plan::WeightDType::kBF16));
  const plan::HostMemory roomy{.total_bytes = int64_t{1} << 40, .available_bytes = int64_t{1} << 40};

  ParallelConfig whole = layout(1, 2);  // both replicas here, each a whole copy
  auto node = check_cpu_node_fits_host(*config, load, memory, whole, blocks, block_size, roomy);
  ASSERT_TRUE(node.ok()) << node.error().message;
  EXPECT_EQ(node->kv_bytes, 2 * kv_per_replica);
  EXPECT_EQ(node->weight_bytes, static_cast<int64_t>(bf16 * 2));
  EXPECT_STREQ(node->held_name, "bf16");

  ParallelConfig headless = layout(1, 2);  // DP rank 1 of 2 on this node, experts spread over both
  headless.enable_expert_parallel = true;
  headless.nodes.size_local = 1;
  headless.nodes.start_rank = 1;
  headless.nodes.headless = true;
  node = check_cpu_node_fits_host(*config, load, memory, headless, blocks, block_size, roomy);
  ASSERT_TRUE(node.ok()) << node.error().message;
  EXPECT_EQ(node->kv_bytes, kv_per_replica);
  EXPECT_EQ(node->weight_bytes, static_cast<int64_t>(bf16 * 0.5));

  const plan::HostMemory small{.total_bytes = kv_per_replica, .available_bytes = kv_per_replica / 2};
  node = check_cpu_node_fits_host(*config, load, memory, headless, blocks, block_size, small);
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.error().message, HasSubstr("lower --kv-cache-memory"));
  const plan::HostMemory tight{.total_bytes = kv_per_replica * 2, .available_bytes = kv_per_replica + 1};
  node = check_cpu_node_fits_host(*config, load, memory, headless, blocks, block_size, tight);
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.error().message, HasSubstr("for the weights (packed as bf16)"));

  // --kv-cache-dtype fp8: the same blocks as e4m3 bytes, a quarter of the KV bytes.
  LoadOptions fp8_load;
  fp8_load.kv_cache_fp8 = true;
  fp8_load.model.kv_cache_fp8 = true;
  EXPECT_EQ(cpu_kv_cache_dtype(fp8_load), plan::KvCacheDType::kFp8);
  EXPECT_EQ(cpu_kv_cache_dtype(load), plan::KvCacheDType::kF32);
  node = check_cpu_node_fits_host(*config, fp8_load, memory, whole, blocks, block_size, roomy);
  ASSERT_TRUE(node.ok()) << node.error().message;
  EXPECT_EQ(node->kv_bytes * 4, 2 * kv_per_replica);
  EXPECT_EQ(node->kv_bytes,
            2 * blocks * block_size * memory.cpu_replica_kv_bytes_per_token(1, plan::KvCacheDType::kFp8));
}

// The one-GPU start-up check plans the weights and KV cache the CUDA runner holds. Mixtral-8x7B
// (93 GB of bf16 weights) does not fit an 80 GB GPU; under --quantization fp8 (47 GB) it does,
// and --kv-cache-dtype fp8 buys four times the float32 cache's tokens.
TEST(MakeRunner, CudaStartupPlansTheWeightsAndCacheTheRunnerHolds) {
  const ModelConfig config = testing::catalog_shape("mistralai/Mixtral-8x7B-v0.1");
  const plan::MemoryModel memory(config);
  const EngineSizing sizing{.max_model_len = 4096, .max_num_batched_tokens = 8192};
  const int64_t h100 = int64_t{80} << 30;

  LoadOptions bf16;
  const plan::DeploymentShape bf16_shape = cuda_plan_shape(config, bf16, sizing, h100);
  EXPECT_EQ(bf16_shape.dtype, plan::WeightDType::kBF16);
  EXPECT_EQ(bf16_shape.kv_cache_dtype, plan::KvCacheDType::kF32);
  auto refused = plan::check_gpu_startup(memory, bf16_shape);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, HasSubstr("weights need"));

  LoadOptions fp8;
  fp8.model.precision.quantize_fp8 = true;
  const plan::DeploymentShape fp8_shape = cuda_plan_shape(config, fp8, sizing, h100);
  EXPECT_EQ(fp8_shape.dtype, plan::WeightDType::kFp8);
  auto planned = plan::check_gpu_startup(memory, fp8_shape);
  ASSERT_TRUE(planned.ok()) << planned.error().message;
  EXPECT_LT(planned->weights_bytes, int64_t{50} << 30);

  LoadOptions fp8_kv = fp8;
  fp8_kv.kv_cache_fp8 = true;
  const plan::DeploymentShape fp8_kv_shape = cuda_plan_shape(config, fp8_kv, sizing, h100);
  EXPECT_EQ(fp8_kv_shape.kv_cache_dtype, plan::KvCacheDType::kFp8);
  auto planned_kv = plan::check_gpu_startup(memory, fp8_kv_shape);
  ASSERT_TRUE(planned_kv.ok()) << planned_kv.error().message;
  EXPECT_EQ(planned_kv->kv_bytes_per_token * 4, planned->kv_bytes_per_token);
}

}  // namespace
}  // namespace moeserve
