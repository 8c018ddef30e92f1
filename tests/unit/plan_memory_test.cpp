// The memory model: KV bytes per token per attention design, the CPU engine's KV allocation,
// the issue's fit/no-fit verdicts, refusal of layouts vLLM refuses, and the GPU catalog parser.
#include <gtest/gtest.h>

#include "kvcache/kv_memory.h"
#include "loader/checkpoint.h"
#include "runtime/cpu_model.h"
#include "plan/memory_model.h"
#include "unit/catalog_config.h"
#include "plan/planner.h"

namespace moeserve::plan {
namespace {

ModelConfig catalog_config(const std::string& id) {
  auto resolved = resolve_model(id);
  EXPECT_TRUE(resolved.ok()) << (resolved.ok() ? "" : resolved.error().message);
  return resolved->config;
}

Plan plan_for(const std::string& id, const std::string& gpus, WeightDType dtype = WeightDType::kAuto,
              KvCacheDType kv_cache_dtype = KvCacheDType::kAuto) {
  auto resolved = resolve_model(id);
  EXPECT_TRUE(resolved.ok());
  PlanRequest request;
  request.gpus = *parse_gpu_set(gpus);
  request.dtype = dtype;
  request.kv_cache_dtype = kv_cache_dtype;
  auto plan = make_plan(*resolved, request);
  EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().message);
  return *plan;
}

// --kv-cache-dtype auto is what moeserve's CUDA backend stores: float32 (vLLM: 16-bit).
TEST(PlanMemory, KvBytesPerToken) {
  const MemoryModel v3(catalog_config("deepseek-ai/DeepSeek-V3"));
  EXPECT_EQ(v3.kv_bytes_per_token(KvCacheDType::kAuto), 576 * 61 * 4);  // latent 512 + rope key 64, float32
  EXPECT_EQ(v3.kv_bytes_per_token(KvCacheDType::kFp8), 576 * 61);
  const MemoryModel mixtral(catalog_config("mistralai/Mixtral-8x7B-v0.1"));
  EXPECT_EQ(mixtral.kv_bytes_per_token(KvCacheDType::kAuto), 2 * 8 * 128 * 32 * 4);  // K+V, 8 KV heads
  const MemoryModel qwen(catalog_config("Qwen/Qwen3-235B-A22B"));
  EXPECT_EQ(qwen.kv_bytes_per_token(KvCacheDType::kAuto), 2 * 4 * 128 * 94 * 4);
}

// Per GPU: MLA's latent is whole on every TP rank; GQA heads split over TP; PP splits layers.
TEST(PlanMemory, KvPerGpuUnderLayouts) {
  const MemoryModel v3(catalog_config("deepseek-ai/DeepSeek-V3"));
  DeploymentShape shape;
  shape.device_memory_bytes = (*find_gpu("H200"))->memory_bytes;
  shape.tensor_parallel = 8;
  EXPECT_EQ(v3.plan(shape)->kv_bytes_per_token, 576 * 61 * 4);
  shape.tensor_parallel = 1;
  shape.pipeline_parallel = 8;  // 61 layers over 8 stages: the largest stage holds 8
  EXPECT_EQ(v3.plan(shape)->kv_bytes_per_token, 576 * 8 * 4);
  const MemoryModel mixtral(catalog_config("mistralai/Mixtral-8x7B-v0.1"));
  DeploymentShape gqa;
  gqa.device_memory_bytes = shape.device_memory_bytes;
  gqa.tensor_parallel = 4;
  EXPECT_EQ(mixtral.plan(gqa)->kv_bytes_per_token, 2 * 2 * 128 * 32 * 4);
}

TEST(PlanMemory, StageLayersFollowVllmSplit) {
  // vLLM get_pp_indices: 61 layers over 8 stages = 7 each, the 5 extra go to stages 2..6.
  int total = 0;
  for (int stage = 0; stage < 8; ++stage) {
    const auto [first, last] = stage_layers(61, 8, stage);
    EXPECT_EQ(first, total);
    total = last;
    EXPECT_EQ(last - first, (stage >= 2 && stage <= 6) ? 8 : 7) << stage;
  }
  EXPECT_EQ(total, 61);
}

// The CPU engine (engine/engine.cpp) allocates floor(budget / (layers × block × entry × 4))
// blocks of float32 entries through KvMemory; the plan must give the same count, and the
// memory KvMemory then holds must fit the budget with no room for one more block.
TEST(PlanMemory, CpuKvAllocationMatchesEngine) {
  const char* dirs[] = {MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v2", MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v3",
                        MOESERVE_TEST_DATA_DIR "/models/tiny-mixtral", MOESERVE_TEST_DATA_DIR "/models/tiny-qwen2_moe",
                        MOESERVE_TEST_DATA_DIR "/models/tiny-qwen3_moe", MOESERVE_MODELS_DIR "/kjv-mixtral-tiny"};
  const int64_t budget = int64_t{7} << 20;
  for (const char* dir : dirs) {
    auto config = load_model_config(dir);
    ASSERT_TRUE(config.ok());
    const MemoryModel model(*config);
    // The entry size of the model the engine runs, loaded from the checkpoint.
    auto checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
    auto loaded = CpuModel::load(*config, *checkpoint);
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    const int entry = (*loaded)->kv_entry_size();
    EXPECT_EQ(model.kv_bytes_per_token(KvCacheDType::kF32), int64_t{entry} * 4 * config->num_layers) << dir;
    const int64_t blocks = model.cpu_kv_blocks(budget, 16);
    const KvMemory memory(KvShape{config->num_layers, static_cast<int>(blocks), 16, entry});
    EXPECT_LE(static_cast<int64_t>(memory.bytes()), budget) << dir;
    EXPECT_GT(static_cast<int64_t>(memory.bytes()) + int64_t{16} * entry * 4 * config->num_layers, budget) << dir;
  }
}

// --kv-cache-dtype fp8 on the CPU: KvMemory of e4m3 bytes, one per element; the plan's block count
// for a budget fills it as closely as the float32 one does, with four times the blocks.
TEST(PlanMemory, CpuFp8KvAllocationMatchesKvMemory) {
  const char* dirs[] = {MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v2",
                        MOESERVE_TEST_DATA_DIR "/models/tiny-deepseek_v32",
                        MOESERVE_TEST_DATA_DIR "/models/tiny-mixtral", MOESERVE_MODELS_DIR "/kjv-mixtral-tiny"};
  const int64_t budget = int64_t{7} << 20;
  for (const char* dir : dirs) {
    auto config = load_model_config(dir);
    ASSERT_TRUE(config.ok());
    const MemoryModel model(*config);
    const int entry = static_cast<int>(model.kv_elements_per_token_per_layer());
    const int64_t blocks = model.cpu_kv_blocks(budget, 16, 1, KvCacheDType::kFp8);
    EXPECT_GE(blocks, 4 * model.cpu_kv_blocks(budget, 16)) << dir;
    const KvMemory memory(KvShape{config->num_layers, static_cast<int>(blocks), 16, entry, DType::kF8E4M3});
    const KvMemory f32(KvShape{config->num_layers, static_cast<int>(blocks), 16, entry});
    EXPECT_EQ(memory.bytes() * 4, f32.bytes()) << dir;
    EXPECT_LE(static_cast<int64_t>(memory.bytes()), budget) << dir;
    EXPECT_GT(static_cast<int64_t>(memory.bytes()) + int64_t{16} * entry * config->num_layers, budget) << dir;
  }
}

TEST(PlanMemory, Fp8WeightsCarryBlockScales) {
  const MemoryModel v3(catalog_config("deepseek-ai/DeepSeek-V3"));
  const int64_t fp8 = v3.weight_bytes(WeightDType::kFp8);
  const int64_t bf16 = v3.weight_bytes(WeightDType::kBF16);
  // Experts' [2048, 7168] weights: 16 × 56 blocks of fp32 scales each.
  EXPECT_GT(fp8, v3.params().total);       // 1 byte per quantized element + scales + bf16 rest
  EXPECT_LT(fp8, v3.params().total * 101 / 100);
  EXPECT_EQ(bf16, v3.params().total * 2 + 58 * 256 * 2);  // e_score_correction_bias stays fp32
}

// GPT-OSS's published MXFP4 experts: per 32 values of a row, 16 bytes of e2m1 pairs and an e8m0
// scale. One CUDA GPU keeps them so; a TP or EP split (and the CPU) dequantizes them to bf16.
TEST(PlanMemory, Mxfp4ExpertsWhereOneGpuHoldsThemWhole) {
  const ModelConfig config = catalog_config("openai/gpt-oss-120b");
  ASSERT_TRUE(config.mxfp4_experts);
  const MemoryModel model(config);
  const int64_t bf16 = model.weight_bytes(WeightDType::kAuto);
  const int64_t mxfp4 = model.weight_bytes(WeightDType::kAuto, /*mxfp4_experts=*/true);
  // 36 layers of 128 experts: gate_up [5760, 2880] and down [2880, 2880], 2 bytes each as bf16.
  const int64_t experts = int64_t{36} * 128 * (5760 + 2880) * 2880;
  EXPECT_EQ(bf16 - mxfp4, experts * 2 - experts / 32 * 17);
  EXPECT_NEAR(mxfp4 / double(int64_t{1} << 30), 60.8, 0.05);  // the 65 GB checkpoint
  // (GPT-OSS's experts stream at every step size, with split-K sums: 2048-token steps leave room)
  DeploymentShape one{.max_model_len = 32768, .max_num_batched_tokens = 2048, .device_memory_bytes = int64_t{80} << 30};
  EXPECT_TRUE(model.keeps_mxfp4(one));
  auto planned = model.plan(one);
  ASSERT_TRUE(planned.ok()) << planned.error().message;
  EXPECT_TRUE(planned->mxfp4_experts);
  EXPECT_EQ(planned->weights_bytes, mxfp4);
  EXPECT_TRUE(planned->fits) << planned->verdict;
  DeploymentShape tp2 = one;
  tp2.tensor_parallel = 2;
  EXPECT_FALSE(model.keeps_mxfp4(tp2));
  auto split = model.plan(tp2);
  ASSERT_TRUE(split.ok()) << split.error().message;
  EXPECT_FALSE(split->mxfp4_experts);
  EXPECT_GT(split->weights_bytes, mxfp4);  // half of bf16's 217 GiB
  EXPECT_FALSE(MemoryModel(catalog_config("mistralai/Mixtral-8x7B-v0.1")).keeps_mxfp4(one));
}

// The one-GPU plan against what CUDA runners allocated on an H100 (bench/results/
// 2026-12-07-h100-workspace-bound.json: `moeserve bench latency --device cuda --load-format dummy
// --dtype bfloat16`, --gpu-memory-utilization 0.9, its catalog shapes cut to the layers named):
// the KV blocks each runner sized from the GPU's free memory after loading its weights and
// reserving its arena, within 1% (measured: 0.03% to 0.55% more planned than allocated), and its
// weights within 1% (the runner holds up to 0.44% more: MLA's absorbed copies, float32 routers).
TEST(PlanMemory, CudaPlanIsWhatTheRunnerAllocated) {
  struct Run {
    const char* name;
    const char* id;
    int layers;
    int max_num_batched_tokens;
    int64_t num_kv_blocks;
    int64_t weight_bytes;
  };
  for (const Run& run : {Run{"mixtral-new", "mistralai/Mixtral-8x7B-v0.1", 8, 8192, 43682, 23744618752},
                         Run{"DeepSeek-V3-new", "deepseek-ai/DeepSeek-V3", 4, 8192, 157939, 30356421760},
                         Run{"DeepSeek-V3-new4096", "deepseek-ai/DeepSeek-V3", 4, 4096, 231042, 30356421760},
                         Run{"Kimi-K2-Instruct-new", "moonshotai/Kimi-K2-Instruct", 2, 8192, 231598, 39844920960},
                         Run{"v2lite-new", "deepseek-ai/DeepSeek-V2-Lite", 0, 8192, 36847, 31526214784}}) {
    const MemoryModel memory(moeserve::testing::catalog_shape(run.id, run.layers));
    // (bench latency's runners hold every row's logits)
    const DeploymentShape shape{.dtype = WeightDType::kBF16,
                                .max_model_len = 4096,
                                .max_num_batched_tokens = run.max_num_batched_tokens,
                                .max_logit_rows = run.max_num_batched_tokens,
                                .device_memory_bytes = (*parse_gpu_set("1xH100")).gpu->memory_bytes};
    auto planned = memory.plan(shape);
    ASSERT_TRUE(planned.ok()) << planned.error().message;
    std::printf("%s: KV blocks planned %lld, allocated %lld (%.4f); weights %.4f\n", run.name,
                static_cast<long long>(planned->kv_blocks), static_cast<long long>(run.num_kv_blocks),
                double(planned->kv_blocks) / run.num_kv_blocks, double(planned->weights_bytes) / run.weight_bytes);
    EXPECT_NEAR(double(planned->kv_blocks) / run.num_kv_blocks, 1.0, 0.01) << run.name;
    EXPECT_NEAR(double(planned->weights_bytes) / run.weight_bytes, 1.0, 0.01) << run.name;
  }
}

TEST(PlanMemory, IssueVerdicts) {
  EXPECT_TRUE(plan_for("deepseek-ai/DeepSeek-V3", "8xH200", WeightDType::kFp8).fits);
  EXPECT_FALSE(plan_for("deepseek-ai/DeepSeek-V3", "8xH100", WeightDType::kFp8).fits);
  EXPECT_FALSE(plan_for("deepseek-ai/DeepSeek-V3", "8xH200", WeightDType::kBF16).fits);
  EXPECT_FALSE(plan_for("moonshotai/Kimi-K2-Instruct", "8xH200", WeightDType::kFp8).fits);
  EXPECT_TRUE(plan_for("moonshotai/Kimi-K2-Instruct", "16xH200", WeightDType::kFp8).fits);
  const Plan mixtral_one = plan_for("mistralai/Mixtral-8x7B-v0.1", "1xH100", WeightDType::kBF16);
  EXPECT_FALSE(mixtral_one.fits);
  ASSERT_TRUE(mixtral_one.smallest_fit.has_value());
  EXPECT_EQ(mixtral_one.smallest_gpus.count, 2);  // the smallest set that fits
  EXPECT_TRUE(plan_for("mistralai/Mixtral-8x7B-v0.1", "2xH100", WeightDType::kBF16).fits);
  // Qwen3-30B-A3B in bf16 on one H100 at its 40,960-token context: 54k tokens of moeserve's float32
  // auto cache, with a step arena that holds one sequence's logit row each (32k if it held every
  // row's); four times as many in fp8.
  const Plan qwen = plan_for("Qwen/Qwen3-30B-A3B", "1xH100", WeightDType::kBF16);
  EXPECT_TRUE(qwen.fits);
  const Plan qwen_fp8_kv = plan_for("Qwen/Qwen3-30B-A3B", "1xH100", WeightDType::kBF16, KvCacheDType::kFp8);
  EXPECT_NEAR(double(qwen_fp8_kv.layouts[qwen_fp8_kv.best].total_kv_tokens()) /
                  double(qwen.layouts[qwen.best].total_kv_tokens()),
              4.0, 0.001);
}

TEST(PlanMemory, RefusesInvalidShapes) {
  const MemoryModel v3(catalog_config("deepseek-ai/DeepSeek-V3"));
  DeploymentShape shape;
  shape.device_memory_bytes = int64_t{80} << 30;
  auto refused = [&](DeploymentShape s, const std::string& needle) {
    auto result = v3.plan(s);
    ASSERT_FALSE(result.ok());
    EXPECT_NE(result.error().message.find(needle), std::string::npos) << result.error().message;
  };
  DeploymentShape s = shape;
  s.tensor_parallel = 3;
  refused(s, "does not divide the 128 attention heads");
  s = shape;
  s.pipeline_parallel = 62;
  refused(s, "exceeds the 61 layers");
  s = shape;
  s.tensor_parallel = 8;
  s.data_parallel = 4;  // experts split 32 ways: 2048 / 32 = 64, not a multiple of the 128 fp8 block
  refused(s, "fp8 weight block");
  s.enable_expert_parallel = true;  // the same ranks holding whole experts is fine
  EXPECT_TRUE(v3.plan(s).ok());
  s = shape;
  s.gpu_memory_utilization = 1.5;
  refused(s, "--gpu-memory-utilization");
  s = shape;
  s.max_model_len = 200000;
  refused(s, "max_position_embeddings");
  s = shape;
  s.max_num_seqs = 512;
  s.max_num_batched_tokens = 256;
  refused(s, "--max-num-batched-tokens");
  const MemoryModel mixtral(catalog_config("mistralai/Mixtral-8x7B-v0.1"));
  DeploymentShape ep = shape;
  ep.tensor_parallel = 8;
  ep.data_parallel = 2;
  ep.enable_expert_parallel = true;
  auto result = mixtral.plan(ep);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("exceeds the 8 experts"), std::string::npos);
}

TEST(PlanMemory, GpuCatalog) {
  auto set = parse_gpu_set("8xH200");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->count, 8);
  EXPECT_EQ(set->gpu->name, "H200");
  EXPECT_EQ(parse_gpu_set("h100")->count, 1);
  EXPECT_EQ(parse_gpu_set("2xMI300X")->gpu->name, "MI300X");
  EXPECT_FALSE((*find_gpu("A100"))->fp8_tensor_cores);
  auto unknown = parse_gpu_set("8xV100");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown GPU 'V100' (known: H100"), std::string::npos);
  EXPECT_FALSE(parse_gpu_set("0xH100").ok());
  for (const GpuSpec& gpu : gpu_catalog()) {
    EXPECT_GT(gpu.memory_bytes, 0);
    EXPECT_FALSE(gpu.source.empty());
  }
}

TEST(PlanMemory, UnknownModelIsAClearError) {
  auto resolved = resolve_model("acme/NotAModel-1T");
  ASSERT_FALSE(resolved.ok());
  EXPECT_NE(resolved.error().message.find("not a local checkpoint directory, a config.json, or a catalog model"),
            std::string::npos);
  EXPECT_NE(resolved.error().message.find("deepseek-ai/DeepSeek-V3"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::plan
