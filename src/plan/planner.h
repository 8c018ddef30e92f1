// The planner behind `moeserve plan`: resolves MODEL (checkpoint dir, config.json or catalog
// id), tries every TP × PP × DP (± expert parallelism) layout of the GPU set through the
// MemoryModel, picks the one that holds the most KV tokens (ties go to the simpler layout), says
// why, finds the smallest GPU set that fits when nothing does, and writes the `moeserve serve`
// command for the recommendation.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "plan/gpu_catalog.h"
#include "plan/memory_model.h"

namespace moeserve::plan {

struct ResolvedModel {
  std::string id;      // as given on the command line
  std::string source;  // "catalog: <source>" or the config.json path
  ModelConfig config;
};
// A directory with config.json, a config.json path, or a catalog id (checked in that order).
Result<ResolvedModel> resolve_model(const std::string& model);

struct PlanRequest {
  GpuSet gpus;
  WeightDType dtype = WeightDType::kAuto;
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
  int max_model_len = 0;                      // 0 = max_position_embeddings
  std::optional<int> max_num_seqs;            // unset: vLLM's default for the GPU
  std::optional<int> max_num_batched_tokens;  // unset: vLLM's default for the GPU
  double gpu_memory_utilization = 0.9;
  int block_size = 16;
  bool enforce_eager = false;
};

struct LayoutOption {
  DeploymentShape shape;
  bool valid = false;
  std::string invalid_reason;  // when !valid
  MemoryBreakdown memory;      // when valid
  int64_t total_kv_tokens() const { return memory.kv_tokens * shape.data_parallel; }
  std::string label() const;   // "TP=8 EP=8", "TP=2 PP=2", ...
};

struct Plan {
  std::string model;
  ParamCounts params;
  WeightDType dtype = WeightDType::kBF16;  // resolved
  int64_t weight_bytes_total = 0;          // all served weights in `dtype`, unsharded
  bool mxfp4_experts = false;              // ... the routed experts as published MXFP4 (GPT-OSS)
  int64_t kv_bytes_per_token = 0;          // whole model, unsharded, in the KV dtype
  GpuSet gpus;
  std::vector<LayoutOption> layouts;       // every layout of `gpus`
  int best = -1;                           // the winner (fits) or the closest miss; -1 if none valid
  bool fits = false;
  std::string why;                         // why the winner wins, or why nothing fits
  std::optional<LayoutOption> smallest_fit;  // when nothing fits: the smallest GPU set that does
  GpuSet smallest_gpus;
  std::vector<std::string> notes;          // e.g. fp8 on a GPU without FP8 tensor cores
  std::string command;                     // `moeserve serve ...` for the recommendation
};

Result<Plan> make_plan(const ResolvedModel& model, const PlanRequest& request);

// Every layout of `gpus` GPUs: TP within one node, PP over the rest, DP replicas; for MoE models
// each with and without expert parallelism.
std::vector<DeploymentShape> candidate_layouts(const ModelConfig& config, int gpus, int gpus_per_node);

std::string render_plan_text(const Plan& plan);
nlohmann::json render_plan_json(const Plan& plan);

}  // namespace moeserve::plan
