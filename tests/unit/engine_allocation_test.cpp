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

// --kv-cache-dtype fp8: the CPU's cache holds e4m3 bytes, 1 per element against float32's 4. The
// same block count takes a quarter of the bytes, and the same budget buys four times the blocks
// (the memory model's figure, which the runner allocates, the engine hands out and the TP ranks
// share as above).
TEST(EngineAllocation, Fp8KvCacheHoldsFourTimesTheTokensOfTheSameBudget) {
  const int64_t budget = int64_t{9} << 20;
  ThreadPool pool(1);
  for (const char* dir : kModels) {
    auto config = load_model_config(dir);
    ASSERT_TRUE(config.ok()) << dir;
    const plan::MemoryModel memory(*config);
    const int64_t f32_per_token = memory.cpu_replica_kv_bytes_per_token(1);
    const int64_t fp8_per_token = memory.cpu_replica_kv_bytes_per_token(1, plan::KvCacheDType::kFp8);
    EXPECT_EQ(fp8_per_token * 4, f32_per_token) << dir;
    EXPECT_EQ(fp8_per_token, memory.kv_bytes_per_token(plan::KvCacheDType::kFp8)) << dir;
    auto f32_blocks = plan::check_cpu_startup(memory, budget, 16, 128);
    auto blocks = plan::check_cpu_startup(memory, budget, 16, 128, 1, plan::KvCacheDType::kFp8);
    ASSERT_TRUE(f32_blocks.ok() && blocks.ok()) << dir;
    EXPECT_GE(*blocks, 4 * *f32_blocks) << dir;
    EXPECT_LT(*blocks, 4 * (*f32_blocks + 1)) << dir;

    LoadOptions load;
    load.kv_cache_fp8 = true;
    load.model.kv_cache_fp8 = true;
    auto loaded = load_model(dir, load);
    ASSERT_TRUE(loaded.ok()) << dir;
    {  // the same block count as float32: a quarter of the bytes
      CpuDevice fp8(*loaded->model, ExecContext{&pool});
      auto f32_model = load_model(dir, LoadOptions{});
      ASSERT_TRUE(f32_model.ok()) << dir;
      CpuDevice f32(*f32_model->model, ExecContext{&pool});
      EXPECT_EQ(fp8.kv_element_bytes(), 1);
      EXPECT_EQ(f32.kv_element_bytes(), 4);
      ASSERT_TRUE(fp8.allocate_kv_cache(static_cast<int>(*f32_blocks), 16).ok());
      ASSERT_TRUE(f32.allocate_kv_cache(static_cast<int>(*f32_blocks), 16).ok());
      EXPECT_EQ(fp8.kv_bytes() * 4, f32.kv_bytes()) << dir;
    }
    auto runner = make_cpu_runner(std::move(*loaded),
                                  {.num_kv_blocks = static_cast<int>(*blocks), .block_size = 16, .threads = 1});
    ASSERT_TRUE(runner.ok());
    const int64_t allocated = static_cast<int64_t>((*runner)->kv_memory_bytes());
    const int64_t block_bytes = 16 * fp8_per_token;
    EXPECT_EQ(allocated, *blocks * block_bytes) << dir;
    EXPECT_LE(allocated, budget) << dir;
    EXPECT_GT(allocated + block_bytes, budget) << dir;
    EngineConfig engine_config;
    engine_config.scheduler.max_model_len = 128;
    auto engine = Engine::create(dir, std::move(*runner), nullptr, engine_config);
    ASSERT_TRUE(engine.ok()) << engine.error().message;
    EXPECT_EQ((*engine)->num_kv_blocks(), *blocks) << dir;

    // TP 2: the ranks' e4m3 caches together fit the replica's budget with no room for a block more.
    auto two = plan::check_cpu_startup(memory, budget, 16, 128, /*tensor_parallel=*/2, plan::KvCacheDType::kFp8);
    ASSERT_TRUE(two.ok()) << dir;
    auto checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << dir;
    ParallelConfig parallel;
    parallel.tensor_parallel_size = 2;
    auto group = RankGroup::create(*config, *checkpoint, parallel, ModelOptions{.kv_cache_fp8 = true},
                                   static_cast<int>(*two), 16);
    ASSERT_TRUE(group.ok()) << dir << ": " << group.error().message;
    const int64_t group_bytes = static_cast<int64_t>((*group)->kv_memory_bytes(0));
    const int64_t group_block = 16 * memory.cpu_replica_kv_bytes_per_token(2, plan::KvCacheDType::kFp8);
    EXPECT_EQ(group_bytes, *two * group_block) << dir;
    EXPECT_LE(group_bytes, budget) << dir;
    EXPECT_GT(group_bytes + group_block, budget) << dir;
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
  // fp8: a quarter of the bytes per token, so a quarter of the budget does.
  EXPECT_FALSE(plan::check_cpu_startup(memory, 63 * per_token / 4, 16, 64, 1, plan::KvCacheDType::kFp8).ok());
  EXPECT_TRUE(plan::check_cpu_startup(memory, 64 * per_token / 4, 16, 64, 1, plan::KvCacheDType::kFp8).ok());
}

TEST(EngineAllocation, GpuStartupNamesTheFix) {
  auto config = load_model_config(MOESERVE_MODELS_DIR "/kjv-mixtral-tiny");
  ASSERT_TRUE(config.ok());
  const plan::MemoryModel memory(*config);
  plan::DeploymentShape shape;
  shape.device_memory_bytes = int64_t{80} << 30;
  shape.max_model_len = 4096;
  auto planned = plan::check_gpu_startup(memory, shape);
  ASSERT_TRUE(planned.ok()) << planned.error().message;
  // Room for half of one 4096-token sequence's float32 KV cache: the fixes name the fp8 cache.
  const int64_t rest = planned->weights_bytes + planned->activation_bytes + planned->runtime_bytes +
                       planned->comm_buffer_bytes + 2048 * planned->kv_bytes_per_token;
  shape.device_memory_bytes = static_cast<int64_t>(rest / shape.gpu_memory_utilization) + 1;
  auto refused = plan::check_gpu_startup(memory, shape);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("lower --max-model-len to 20"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("--kv-cache-dtype fp8"), std::string::npos) << refused.error().message;
  shape.kv_cache_dtype = plan::KvCacheDType::kFp8;
  EXPECT_TRUE(plan::check_gpu_startup(memory, shape).ok());
  shape.kv_cache_dtype = plan::KvCacheDType::kAuto;
  // 900 MB of GPU memory holds the bf16 weights (27 MB) but not the step arena of 8192 tokens
  // beside the CUDA runtime.
  shape.device_memory_bytes = int64_t{900} << 20;
  refused = plan::check_gpu_startup(memory, shape);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("lower it"), std::string::npos) << refused.error().message;
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
