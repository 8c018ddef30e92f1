// Loading a model for running: config.json (+ --hf-overrides) → ModelConfig, weights from the
// checkpoint (or random ones for --load-format dummy) → CpuModel. The weight source lives
// as long as the model, since layers hold views into it.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "loader/weight_source.h"
#include "runtime/cpu_model.h"

namespace moeserve {

enum class LoadFormat { kAuto, kDummy };

// --dtype: the precision activations are computed in (weights stay as stored, bf16). The CPU
// backend computes float32 whatever is asked; the CUDA runner multiplies float32-like (bf16 hi +
// lo halves) for auto / float32 and bf16-rounded inputs (vLLM's numerics) for bfloat16.
enum class ActivationDType { kAuto, kFloat32, kBFloat16, kFloat16 };

// What --dtype makes of a float32 checkpoint's weights on a backend that holds float32 (the CPU):
// auto and float32 keep them (float32 also a bf16 checkpoint's F32 tensors), bfloat16 and
// float16 round them to bf16.
WeightPrecision::Float32 float32_weights(ActivationDType dtype);

struct LoadOptions {
  nlohmann::json hf_overrides = nlohmann::json::object();
  LoadFormat load_format = LoadFormat::kAuto;
  ActivationDType dtype = ActivationDType::kAuto;
  uint64_t seed = 0;
  bool quantize_fp8 = false;  // --quantization fp8 (model.precision follows it on the CPU)
  bool kv_cache_fp8 = false;  // --kv-cache-dtype fp8 (model.kv_cache_fp8 on the CPU)
  ModelOptions model;
};

struct LoadedModel {
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<CpuModel> model;
};

Result<LoadedModel> load_model(const std::string& model_dir, const LoadOptions& options);
// The weights alone (the checkpoint's mmap, or random ones for --load-format dummy), for callers
// that build each rank's model from them.
Result<std::unique_ptr<WeightSource>> open_weights(const std::string& model_dir, const LoadOptions& options);
// The same over a ModelConfig the caller already parsed (config.json with options.hf_overrides,
// which this overload does not read again): start-up parses config.json once.
Result<LoadedModel> load_model(const std::string& model_dir, const ModelConfig& config, const LoadOptions& options);

// EOS ids: generation_config.json's eos_token_id when present, else config.json's.
std::vector<int32_t> load_eos_token_ids(const std::string& model_dir, const ModelConfig& config);

}  // namespace moeserve
