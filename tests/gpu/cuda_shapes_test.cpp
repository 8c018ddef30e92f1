// Every model of the `plan` catalog at its real shape on one GPU (issue 20): each config, cut to
// a few layers that fit beside the others' (DeepSeek-family MoE layers start at layer 1 so the
// cut keeps some), with dummy bf16 weights, prefills and decodes batches of 1 to 256 sequences
// eagerly and through CUDA graphs, in both activation precisions. Every step's logits must be finite, and the graph replays
// must pick exactly the tokens the eager steps pick (the same kernels on the same inputs, so
// any difference is a graph reading stale or misplaced memory).
//
// MOESERVE_SHAPES_REDUCED=1 runs the reduced set that `cuda_shapes_memcheck` runs under
// compute-sanitizer: two models of the most different shapes (128 experts top-8; MLA with
// shared experts), two layers, batches 1, 8 and 64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <numeric>

#include "plan/memory_model.h"
#include "plan/model_catalog.h"
#include "plan/weights.h"
#include "backend/cuda/cuda_runner_device.h"

namespace moeserve {
namespace {

constexpr double kWeightBudgetBytes = 50e9;  // bf16 weights of one cut model
constexpr int kPromptMax = 11;               // prompts of 5..11 tokens,
constexpr int kLongPrompt = 37;              // but the first sequence's: a prefill piece (MLA: plain form)
constexpr int kDecodeSteps = 3;
constexpr int kBlocksPerSeq = 3;  // 16-token blocks: 37 + 3 tokens fit in three

bool reduced() {
  const char* value = std::getenv("MOESERVE_SHAPES_REDUCED");
  return value != nullptr && std::string(value) == "1";
}

std::vector<int> batch_sizes() {
  if (reduced()) return {1, 8, 64};
  return {1, 2, 8, 32, 64, 128, 256};
}

// The catalog config cut to at most `max_layers` layers whose bf16 weights fit the budget, FP8
// quantization dropped (dummy weights bf16) unless fp8 (dummy weights FP8, as the checkpoint's).
ModelConfig cut_config(const plan::CatalogModel& model, int max_layers, bool fp8 = false) {
  nlohmann::json overrides = nlohmann::json::object();
  if (!fp8) overrides["quantization_config"] = nullptr;
  if (model.config.contains("first_k_dense_replace")) overrides["first_k_dense_replace"] = 1;
  for (int layers = max_layers; layers >= 2; --layers) {
    overrides["num_hidden_layers"] = layers;
    auto config = parse_model_config(model.config, overrides);
    if (!config.ok()) throw std::runtime_error(model.id + ": " + config.error().message);
    const double bytes = 2.0 * plan::count_params(*config, WeightPlan::build(*config)).total;
    if (bytes <= kWeightBudgetBytes || layers == 2) return *config;
  }
  throw std::logic_error("unreachable");
}

// Tokens picked by a prefill step and kDecodeSteps decode steps of `batch` sequences (prompts of
// 5..11 pseudo-random ids, the first one's of 37, each sequence on its own blocks in reverse
// order), every row's logits checked finite.
std::vector<int32_t> run_batch(ModelRunner& runner, int batch, const std::string& label) {
  const int vocab = runner.config().vocab_size;
  std::vector<std::vector<int32_t>> tokens(batch), tables(batch);
  for (int s = 0; s < batch; ++s) {
    const int len = s == 0 ? kLongPrompt : 5 + s % (kPromptMax - 4);
    for (int i = 0; i < len; ++i) tokens[s].push_back(int32_t((uint64_t(s) * 104729 + i * 7919 + 17) % vocab));
    tokens[s].reserve(len + kDecodeSteps + 1);
    static_assert(kLongPrompt + kDecodeSteps <= kBlocksPerSeq * 16);
    tables[s] = {kBlocksPerSeq * s + 2, kBlocksPerSeq * s + 1, kBlocksPerSeq * s};
  }
  std::vector<int32_t> picked_all;
  std::vector<int> computed(batch, 0);
  for (int step = 0; step <= kDecodeSteps; ++step) {
    std::vector<RunnerSeq> seqs(batch);
    for (int s = 0; s < batch; ++s) {
      const int n = static_cast<int>(tokens[s].size());
      seqs[s] = RunnerSeq{.tokens = tokens[s],
                          .num_computed = computed[s],
                          .num_new = n - computed[s],
                          .samples = true,
                          .block_table = tables[s]};
      computed[s] = n;
    }
    const Tensor logits = runner.execute(seqs);
    const float* data = logits.f32();
    const int64_t count = int64_t(batch) * vocab;
    const int64_t bad = std::count_if(data, data + count, [](float v) { return !std::isfinite(v); });
    EXPECT_EQ(bad, 0) << label << " batch " << batch << " step " << step << ": non-finite logits";
    const std::span<const int32_t> picked = runner.picked_tokens();
    EXPECT_EQ(picked.size(), size_t(batch));
    for (int s = 0; s < batch && s < int(picked.size()); ++s) {
      EXPECT_GE(picked[s], 0);
      EXPECT_LT(picked[s], vocab);
      tokens[s].push_back(std::clamp(picked[s], 0, vocab - 1));
      picked_all.push_back(picked[s]);
    }
  }
  return picked_all;
}

std::vector<std::vector<int32_t>> run_all_batches(const ModelConfig& config, bool enforce_eager,
                                                  cuda::PrefillPrecision precision, const std::string& label,
                                                  bool fp8 = false) {
  const int max_batch = batch_sizes().back();
  auto runner = make_cuda_runner(
      config, nullptr, /*seed=*/7,
      CudaDeviceOptions{.prefill_precision = precision, .enforce_eager = enforce_eager, .quantize_fp8 = fp8},
      ModelRunnerOptions{.num_kv_blocks = kBlocksPerSeq * max_batch,
                         .max_num_batched_tokens = max_batch * kPromptMax + kLongPrompt});
  if (!runner.ok()) {
    ADD_FAILURE() << label << ": " << runner.error().message;
    return {};
  }
  std::vector<std::vector<int32_t>> picked;
  for (int batch : batch_sizes()) picked.push_back(run_batch(**runner, batch, label));
  return picked;
}

class CudaShapesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaShapesTest, EveryBatchEagerAndThroughGraphs) {
  if (reduced() && GetParam() != "Qwen/Qwen3-30B-A3B" && GetParam() != "deepseek-ai/DeepSeek-V2-Lite") {
    GTEST_SKIP() << "not in the reduced set";
  }
  auto model = plan::find_catalog_model(GetParam());
  ASSERT_TRUE(model.ok()) << model.error().message;
  const ModelConfig config = cut_config(**model, reduced() ? 2 : 4);
  const std::string label = GetParam() + " (" + std::to_string(config.num_layers) + " layers)";
  // Both activation precisions: bf16 (what --dtype auto runs on these bf16 configs) and the
  // float32-like split mode (--dtype float32); their kernels differ from prefill to decode.
  for (const auto precision : {cuda::PrefillPrecision::kBf16, cuda::PrefillPrecision::kSplitBf16}) {
    const std::string run = label + " " + cuda::prefill_precision_name(precision);
    const auto eager = run_all_batches(config, /*enforce_eager=*/true, precision, run + " eager");
    const auto graphs = run_all_batches(config, /*enforce_eager=*/false, precision, run + " graphs");
    ASSERT_EQ(eager.size(), graphs.size());
    for (size_t b = 0; b < eager.size(); ++b) {
      EXPECT_EQ(eager[b], graphs[b]) << run << ": batch " << batch_sizes()[b]
                                     << " picked other tokens through graphs than eagerly";
    }
  }
}

std::vector<std::string> catalog_ids() {
  std::vector<std::string> ids;
  for (const plan::CatalogModel& model : plan::model_catalog()) ids.push_back(model.id);
  return ids;
}

INSTANTIATE_TEST_SUITE_P(Catalog, CudaShapesTest, ::testing::ValuesIn(catalog_ids()), [](const auto& info) {
  std::string name = info.param;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
});

// The FP8 checkpoints' shapes (DeepSeek-V3, Kimi K2: block-scaled e4m3 experts, dense and MLA
// projections) with random FP8 weights held as FP8, cut to 4 layers (2 in the reduced set), through
// every batch eagerly and through graphs, in both activation precisions: FP8 GEMMs at every row
// count (small_gemm, mma_gemm, and the bf16 copies cuBLAS multiplies in the bf16 mode's prefill).
class CudaShapesFp8Test : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaShapesFp8Test, EveryBatchEagerAndThroughGraphs) {
  auto model = plan::find_catalog_model(GetParam());
  ASSERT_TRUE(model.ok()) << model.error().message;
  const ModelConfig config = cut_config(**model, reduced() ? 2 : 4, /*fp8=*/true);
  ASSERT_TRUE(config.fp8_block_size.has_value());
  const std::string label = GetParam() + " fp8 (" + std::to_string(config.num_layers) + " layers)";
  for (const auto precision : {cuda::PrefillPrecision::kBf16, cuda::PrefillPrecision::kSplitBf16}) {
    const std::string run = label + " " + cuda::prefill_precision_name(precision);
    const auto eager = run_all_batches(config, /*enforce_eager=*/true, precision, run + " eager", /*fp8=*/true);
    const auto graphs = run_all_batches(config, /*enforce_eager=*/false, precision, run + " graphs", /*fp8=*/true);
    ASSERT_EQ(eager.size(), graphs.size());
    for (size_t b = 0; b < eager.size(); ++b) {
      EXPECT_EQ(eager[b], graphs[b]) << run << ": batch " << batch_sizes()[b]
                                     << " picked other tokens through graphs than eagerly";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fp8Checkpoints, CudaShapesFp8Test,
                         ::testing::Values("deepseek-ai/DeepSeek-V3", "moonshotai/Kimi-K2-Instruct"),
                         [](const auto& info) {
                           return std::string(info.param == "deepseek-ai/DeepSeek-V3" ? "DeepSeek_V3" : "Kimi_K2");
                         });

// What `moeserve plan` counts (plan::MemoryModel: the planner's and the start-up check's
// arithmetic) against what the CUDA runner allocates, cut to 2 layers: weight bytes within 5% for
// bf16 weights, for --quantization fp8 of them (the plan counts vLLM's one scale per tensor, the
// runner a float32 scale per row per 128 columns: ~3% more) and for an FP8 checkpoint's shape;
// KV bytes per token exactly, for --kv-cache-dtype fp8 (e4m3) and auto (float32, as planned).
TEST(CudaPlanTest, PlannedBytesMatchTheRunner) {
  struct Case {
    const char* id;
    bool checkpoint_fp8;
    bool quantize_fp8;
    bool kv_fp8;
  };
  for (const Case c :
       {Case{"mistralai/Mixtral-8x7B-v0.1", false, false, false},
        Case{"mistralai/Mixtral-8x7B-v0.1", false, true, true}, Case{"deepseek-ai/DeepSeek-V3", true, true, true}}) {
    auto model = plan::find_catalog_model(c.id);
    ASSERT_TRUE(model.ok()) << model.error().message;
    const ModelConfig config = cut_config(**model, 2, c.checkpoint_fp8);
    constexpr int kBlocks = 8;
    auto runner = make_cuda_runner(config, nullptr, /*seed=*/7,
                                   CudaDeviceOptions{.quantize_fp8 = c.quantize_fp8, .kv_cache_fp8 = c.kv_fp8},
                                   ModelRunnerOptions{.num_kv_blocks = kBlocks, .max_num_batched_tokens = 64});
    ASSERT_TRUE(runner.ok()) << runner.error().message;
    CudaRunnerDevice& device = cuda_device(**runner);
    const plan::MemoryModel memory(config);
    const auto weights = c.quantize_fp8 || c.checkpoint_fp8 ? plan::WeightDType::kFp8 : plan::WeightDType::kAuto;
    const double planned = double(memory.weight_bytes(weights));
    const double held = double(device.weight_bytes());
    const std::string label = std::string(c.id) + (weights == plan::WeightDType::kFp8 ? " fp8" : " bf16");
    std::printf("%s: weights planned %.4f GB, held %.4f GB (%.4f)\n", label.c_str(), planned / 1e9, held / 1e9,
                held / planned);
    EXPECT_NEAR(held / planned, 1.0, 0.05) << label;
    const int64_t kv_per_token = int64_t(device.kv_bytes()) / (kBlocks * (*runner)->block_size());
    const int64_t kv_planned =
        memory.kv_bytes_per_token(c.kv_fp8 ? plan::KvCacheDType::kFp8 : plan::KvCacheDType::kAuto);
    EXPECT_EQ(kv_per_token, kv_planned) << label;
  }
}

}  // namespace
}  // namespace moeserve
