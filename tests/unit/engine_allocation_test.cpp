// The engine's KV allocation is the memory model's figure (issue 5): for every fixture model and
// the bundled one, the blocks `serve` start-up computes from a byte budget are the blocks the
// CPU runner really allocates and the engine's cache manager hands out, the bytes allocated fit
// the budget with no room for one more block, and a budget too small for one max_model_len
// sequence is refused before loading, naming the flag and the size that would do; with TP the
// budget is the replica's, over its ranks.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "plan/memory_model.h"
#include "plan/startup_check.h"
#include "loader/checkpoint.h"
#include "runtime/cpu_runner.h"
#include "runtime/rank_group.h"

namespace moeserve {
namespace {

const char* kModels[] = {MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v2", MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v3",
                         MOESERVE_TEST_DATA_DIR "/models/tiny-mixtral",     MOESERVE_TEST_DATA_DIR "/models/tiny-qwen2_moe",
                         MOESERVE_TEST_DATA_DIR "/models/tiny-qwen3_moe",   MOESERVE_MODELS_DIR "/kjv-mixtral-tiny"};

TEST(EngineAllocation, RunnerAndEngineAllocateWhatThePlanSays) {
  const int64_t budget = int64_t{9} << 20;
  for (const char* dir : kModels) {
    auto config = load_model_config(dir);
    ASSERT_TRUE(config.ok()) << dir;
    const plan::MemoryModel memory(*config);
    const int max_model_len = 128;
    auto blocks = plan::check_cpu_startup(memory, budget, 16, max_model_len);
    ASSERT_TRUE(blocks.ok()) << dir << ": " << blocks.error().message;
    auto loaded = load_model(dir, LoadOptions{});
    ASSERT_TRUE(loaded.ok()) << dir;
    auto runner = make_cpu_runner(std::move(*loaded), {.num_kv_blocks = static_cast<int>(*blocks), .block_size = 16,
                                                       .threads = 1});
    ASSERT_TRUE(runner.ok());
    const size_t allocated = (*runner)->kv_memory_bytes();
    const int64_t block_bytes = 16 * memory.kv_bytes_per_token(plan::KvCacheDType::kF32);
    EXPECT_EQ(static_cast<int64_t>(allocated), *blocks * block_bytes) << dir;
    EXPECT_LE(static_cast<int64_t>(allocated), budget) << dir;
    EXPECT_GT(static_cast<int64_t>(allocated) + block_bytes, budget) << dir;

    EngineConfig engine_config;
    engine_config.scheduler.max_model_len = max_model_len;
    auto engine = Engine::create(dir, std::move(*runner), nullptr, engine_config);
    ASSERT_TRUE(engine.ok()) << engine.error().message;
    EXPECT_EQ((*engine)->num_kv_blocks(), *blocks) << dir;
  }
}

// --kv-cache-memory is a DP replica's budget over all its TP ranks: GQA ranks split the KV heads,
// but every rank of an MLA model holds the whole latent, so with TP 2 an MLA replica buys half the
// blocks. The ranks' allocations together fit the budget with no room for one more block.
TEST(EngineAllocation, TensorParallelRanksShareTheReplicaBudget) {
  const int64_t budget = int64_t{9} << 20;
  for (const char* dir : kModels) {
    auto config = load_model_config(dir);
    ASSERT_TRUE(config.ok()) << dir;
    const plan::MemoryModel memory(*config);
    auto one = plan::check_cpu_startup(memory, budget, 16, 128);
    auto two = plan::check_cpu_startup(memory, budget, 16, 128, /*tensor_parallel=*/2);
    ASSERT_TRUE(one.ok() && two.ok()) << dir;
    EXPECT_EQ(*two, config->is_mla() ? *one / 2 : *one) << dir;
    auto checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << dir;
    ParallelConfig parallel;
    parallel.tensor_parallel_size = 2;
    auto group = RankGroup::create(*config, *checkpoint, parallel, ModelOptions{}, static_cast<int>(*two), 16);
    ASSERT_TRUE(group.ok()) << dir << ": " << group.error().message;
    const int64_t allocated = static_cast<int64_t>((*group)->kv_memory_bytes(0));
    const int64_t block_bytes = 16 * memory.cpu_replica_kv_bytes_per_token(2);
    EXPECT_EQ(allocated, *two * block_bytes) << dir;
    EXPECT_LE(allocated, budget) << dir;
    EXPECT_GT(allocated + block_bytes, budget) << dir;
  }
}

TEST(EngineAllocation, TooSmallBudgetIsRefusedWithTheFix) {
  auto config = load_model_config(MOESERVE_MODELS_DIR "/kjv-mixtral-tiny");
  ASSERT_TRUE(config.ok());
  const plan::MemoryModel memory(*config);
  const int64_t per_token = memory.kv_bytes_per_token(plan::KvCacheDType::kF32);
  // Room for 63 tokens (3 blocks) but a 64-token context needs 4.
  auto refused = plan::check_cpu_startup(memory, 63 * per_token, 16, 64);
  ASSERT_FALSE(refused.ok());
  const std::string& message = refused.error().message;
  EXPECT_NE(message.find("holds 48 tokens"), std::string::npos) << message;
  EXPECT_NE(message.find("--kv-cache-memory " + std::to_string(64 * per_token)), std::string::npos) << message;
  EXPECT_NE(message.find("--max-model-len to 48"), std::string::npos) << message;
  EXPECT_TRUE(plan::check_cpu_startup(memory, 64 * per_token, 16, 64).ok());
}

TEST(EngineAllocation, GpuStartupNamesTheFix) {
  auto config = load_model_config(MOESERVE_MODELS_DIR "/kjv-mixtral-tiny");
  ASSERT_TRUE(config.ok());
  const plan::MemoryModel memory(*config);
  plan::DeploymentShape shape;
  shape.device_memory_bytes = int64_t{80} << 30;
  shape.max_model_len = 4096;
  EXPECT_TRUE(plan::check_gpu_startup(memory, shape).ok());
  // 40 MB of GPU memory holds the bf16 weights (27 MB) but not the activations of 8192 tokens.
  shape.device_memory_bytes = int64_t{40} << 20;
  auto refused = plan::check_gpu_startup(memory, shape);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("lower them"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("--max-num-batched-tokens 8192"), std::string::npos);
  // 20 MB cannot hold the bf16 weights at all: the fix is fp8 or more GPUs.
  shape.device_memory_bytes = int64_t{20} << 20;
  shape.max_num_batched_tokens = 64;
  shape.max_num_seqs = 4;
  shape.max_model_len = 64;
  refused = plan::check_gpu_startup(memory, shape);
  ASSERT_FALSE(refused.ok());
  const std::string& message = refused.error().message;
  EXPECT_TRUE(message.find("--dtype fp8") != std::string::npos || message.find("GPUs") != std::string::npos)
      << message;
  EXPECT_NE(message.find("weights need"), std::string::npos) << message;
}

}  // namespace
}  // namespace moeserve
