// Float32 checkpoints on the CPU: a float32 copy of a bf16 fixture (every tensor widened to F32,
// torch_dtype float32; bf16 → float32 is exact, so transformers' reference logits still apply) is
// held as float32 under --dtype auto (twice the bytes, logits within 1e-4), rounded to bf16 under
// --dtype bfloat16 (the bf16 fixture's bytes, the same logits), and runs expert parallelism with
// EPLB moving float32 experts.
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "parallel_golden.h"
#include "reference_data.h"
#include "runtime/loaded_model.h"
#include "runtime/make_runner.h"
#include "runtime/sequence_runner.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using testing::Reference;
using Float32 = WeightPrecision::Float32;

constexpr int kNumPrompts = 5;

// A float32 copy of fixture `name` (model.safetensors widened, config.json's torch_dtype
// float32, reference.safetensors beside them) in a temp directory.
std::string float32_copy(const std::string& name) {
  const std::string source_dir = testing::fixture_model(name);
  const fs::path dir = fs::path(::testing::TempDir()) / ("f32-" + name);
  fs::create_directories(dir);
  auto source = SafetensorsFile::open(source_dir + "/model.safetensors");
  if (!source.ok()) throw std::runtime_error(source.error().message);
  std::vector<Tensor> widened;
  widened.reserve((*source)->entries().size());  // the NamedTensors view them
  std::vector<NamedTensor> tensors;
  for (const auto& [tensor_name, entry] : (*source)->entries()) {
    const TensorView view = (*source)->view(tensor_name);
    if (view.dtype != DType::kBF16 && view.dtype != DType::kF32) {
      throw std::runtime_error(tensor_name + " is not bf16 or float32");
    }
    widened.emplace_back(DType::kF32, view.shape);
    convert_to_f32(view.dtype, view.data, widened.back().view().as<float>(), static_cast<size_t>(view.numel()));
    tensors.push_back({tensor_name, widened.back().view()});
  }
  const Status written = write_safetensors((dir / "model.safetensors").string(), tensors);
  if (!written.ok()) throw std::runtime_error(written.error().message);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(source_dir + "/config.json"));
  config["torch_dtype"] = "float32";
  if (config.contains("dtype")) config["dtype"] = "float32";
  std::ofstream(dir / "config.json") << config.dump(2);
  fs::copy_file(source_dir + "/reference.safetensors", dir / "reference.safetensors",
                fs::copy_options::overwrite_existing);
  return dir.string();
}

struct Loaded {
  double worst_error = 0.0;  // per-row relative error over every prompt and position
  size_t weight_bytes = 0;
};

// Loads dir with `precision` and runs the reference's prompts (all logits).
Loaded run(const std::string& dir, Float32 precision) {
  LoadOptions options;
  options.model.precision.f32 = precision;
  auto loaded = load_model(dir, options);
  if (!loaded.ok()) throw std::runtime_error(loaded.error().message);
  ThreadPool pool(2);
  ExecContext exec{&pool};
  const Reference reference(dir + "/reference.safetensors");
  const int vocab = loaded->model->config().vocab_size;
  Loaded result{.weight_bytes = loaded->model->weight_bytes()};
  for (int j = 0; j < kNumPrompts; ++j) {
    const std::vector<int32_t> prompt = reference.ids("prompt_" + std::to_string(j));
    SequenceRunner runner(*loaded->model, exec, static_cast<int>(prompt.size()));
    auto logits = runner.append(prompt, /*all_logits=*/true);
    if (!logits.ok()) throw std::runtime_error(logits.error().message);
    const TensorView expected = reference.tensor("logits_" + std::to_string(j));
    result.worst_error =
        std::max(result.worst_error,
                 testing::max_row_relative_error(logits->f32(), expected.as<float>(), expected.dim(0), vocab));
  }
  return result;
}

class Float32Weights : public ::testing::TestWithParam<const char*> {};

// --dtype auto on a float32 checkpoint: float32 weights (every tensor twice its bf16 bytes; the
// float32 MLA kv_b and selection bias, the rope table and 64-byte rounding keep the ratio under
// 2), logits within 1e-4. --dtype bfloat16: rounded to bf16, byte for byte what the bf16
// fixture loads to, and the same logits (the values are bf16-exact).
TEST_P(Float32Weights, HeldAsFloat32UnlessDtypeRoundsThem) {
  const std::string name = GetParam();
  const std::string f32_dir = float32_copy(name);
  const Loaded bf16 = run(testing::fixture_model(name), Float32::kAuto);
  const Loaded f32 = run(f32_dir, Float32::kAuto);
  const Loaded rounded = run(f32_dir, Float32::kRound);
  std::printf("%s: bf16 checkpoint %zu B, worst row error %.3g; float32 copy held as float32 %zu B (x%.3f), worst "
              "%.3g; --dtype bfloat16 %zu B, worst %.3g\n",
              name.c_str(), bf16.weight_bytes, bf16.worst_error, f32.weight_bytes,
              double(f32.weight_bytes) / double(bf16.weight_bytes), f32.worst_error, rounded.weight_bytes,
              rounded.worst_error);
  EXPECT_LT(f32.worst_error, 1e-4);
  EXPECT_LT(rounded.worst_error, 1e-4);
  EXPECT_GT(f32.weight_bytes, bf16.weight_bytes * 19 / 10);
  EXPECT_LE(f32.weight_bytes, bf16.weight_bytes * 2);
  EXPECT_EQ(rounded.weight_bytes, bf16.weight_bytes);
}

// --dtype float32 on a bf16 checkpoint keeps bf16: widening would add bytes, not information.
TEST(Float32Weights, Float32DtypeDoesNotWidenABf16Checkpoint) {
  const std::string dir = testing::fixture_model("tiny-qwen3_moe");
  const Loaded keep = run(dir, Float32::kKeep);
  EXPECT_EQ(keep.weight_bytes, run(dir, Float32::kAuto).weight_bytes);
  EXPECT_LT(keep.worst_error, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Float32Weights,
                         ::testing::Values("tiny-qwen3_moe", "tiny-qwen2_moe", "tiny-deepseek_v3"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

// Expert parallelism with EPLB over float32 experts: the rearrangements move each slot's float32
// bytes (CpuModel::copy_slot / set_placement), and the outputs stay the reference's.
TEST(Float32Weights, ExpertParallelEplbMovesFloat32Experts) {
  const std::string dir = float32_copy("tiny-qwen3_moe");
  ParallelConfig parallel{.tensor_parallel_size = 1,
                          .data_parallel_size = 2,
                          .enable_expert_parallel = true,
                          .all2all = All2AllBackend::kAlltoall,
                          .num_redundant_experts = 2};
  parallel.eplb = EplbConfig{.enabled = true, .window_size = 3, .step_interval = 4, .num_redundant_experts = 2};
  ASSERT_TRUE(parallel.validate().ok());
  testing::check_dir_against_reference(dir, parallel, [&](RankGroup& group) {
    EXPECT_EQ(group.ep_stats().rearrangements, 4);
    const ModelConfig& config = group.config();
    const MoeConfig& moe = *config.moe;
    for (int layer = 0; layer < config.num_layers; ++layer) {
      if (!config.layer_is_moe[layer]) continue;
      // gate/up [2 Ie, hidden] then down [hidden, Ie], float32
      EXPECT_EQ(group.model(0).expert_bytes(layer),
                size_t(3) * moe.expert_intermediate_size * config.hidden_size * sizeof(float));
    }
  });
}

// --dtype's meaning for float32 weights (cli/engine_flags.cpp sets LoadOptions from it).
TEST(Float32Weights, DtypeFlagDecidesTheFloat32Policy) {
  EXPECT_EQ(float32_weights(ActivationDType::kAuto), Float32::kAuto);
  EXPECT_EQ(float32_weights(ActivationDType::kFloat32), Float32::kKeep);
  EXPECT_EQ(float32_weights(ActivationDType::kBFloat16), Float32::kRound);
  EXPECT_EQ(float32_weights(ActivationDType::kFloat16), Float32::kRound);
}

// The CPU start-up check counts float32 bytes where the CPU holds float32, and bf16 ones under
// --dtype bfloat16.
TEST(Float32Weights, CpuStartupCountsTheHeldDtype) {
  const std::string dir = float32_copy("tiny-qwen3_moe");
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  for (const ActivationDType dtype : {ActivationDType::kAuto, ActivationDType::kBFloat16}) {
    RunnerSpec spec{.model_dir = dir, .config = *config, .device = Device::kCpu};
    spec.load.dtype = dtype;
    spec.load.model.precision.f32 = float32_weights(dtype);
    spec.threads = 1;
    auto runners = make_engine_runners(spec, EngineSizing{.max_model_len = 64, .cpu_kv_cache_bytes = 1 << 20});
    ASSERT_TRUE(runners.ok()) << runners.error().message;
    EXPECT_NE(runners->plan.find(dtype == ActivationDType::kAuto ? "float32 copies" : "bf16 copies"), std::string::npos)
        << runners->plan;
  }
}

}  // namespace
}  // namespace moeserve
