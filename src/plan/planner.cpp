// Layout search and recommendation (see planner.h). The ranking rule: a layout that fits beats
// one that does not; a layout without pipeline parallelism beats one with it (PP holds more KV
// per GPU, since each stage caches only its layers, but adds pipeline bubbles to every step, so
// it is recommended only when nothing else fits); then more KV tokens over all replicas wins
// (capacity is what a serving deployment sells); layouts within 2% of each other are ranked by
// simplicity: fewer pipeline stages, then no expert parallelism, then fewer DP replicas.
#include "plan/planner.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/backend_support.h"
#include "plan/model_catalog.h"

namespace moeserve::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kTieFraction = 0.02;
const int kGpuCounts[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

// Closeness to fitting for layouts that do not: least missing memory first.
int64_t shortfall(const LayoutOption& option) {
  const MemoryBreakdown& m = option.memory;
  const int64_t needed_kv = int64_t{m.max_model_len} * m.kv_bytes_per_token;
  return m.weights_bytes + m.activation_bytes + m.runtime_bytes + m.comm_buffer_bytes + needed_kv - m.budget_bytes;
}

// True when `a` should be recommended over `b`.
bool better(const LayoutOption& a, const LayoutOption& b) {
  if (a.memory.fits != b.memory.fits) return a.memory.fits;
  if (!a.memory.fits) return shortfall(a) < shortfall(b);
  if ((a.shape.pipeline_parallel == 1) != (b.shape.pipeline_parallel == 1)) return a.shape.pipeline_parallel == 1;
  const double ta = static_cast<double>(a.total_kv_tokens()), tb = static_cast<double>(b.total_kv_tokens());
  if (std::abs(ta - tb) > kTieFraction * std::max(ta, tb)) return ta > tb;
  if (a.shape.pipeline_parallel != b.shape.pipeline_parallel) {
    return a.shape.pipeline_parallel < b.shape.pipeline_parallel;
  }
  if (a.shape.enable_expert_parallel != b.shape.enable_expert_parallel) return !a.shape.enable_expert_parallel;
  return a.shape.data_parallel < b.shape.data_parallel;
}

DeploymentShape base_shape(const PlanRequest& request) {
  DeploymentShape shape;
  shape.dtype = request.dtype;
  shape.kv_cache_dtype = request.kv_cache_dtype;
  shape.max_model_len = request.max_model_len;
  // vLLM's OpenAI-server defaults: 1024 sequences / 8192 tokens per step on GPUs with ≥ 70 GiB
  // that are not A100s, 256 / 2048 otherwise.
  const bool large = request.gpus.gpu->memory_bytes >= int64_t{70} * (int64_t{1} << 30) &&
                     request.gpus.gpu->name.rfind("A100", 0) != 0;
  shape.max_num_seqs = request.max_num_seqs.value_or(large ? 1024 : 256);
  shape.max_num_batched_tokens = request.max_num_batched_tokens.value_or(large ? 8192 : 2048);
  if (!request.max_num_batched_tokens.has_value()) {
    shape.max_num_seqs = std::min(shape.max_num_seqs, shape.max_num_batched_tokens);
  }
  shape.block_size = request.block_size;
  shape.gpu_memory_utilization = request.gpu_memory_utilization;
  shape.enforce_eager = request.enforce_eager;
  shape.device_memory_bytes = request.gpus.gpu->memory_bytes;
  return shape;
}

std::vector<LayoutOption> evaluate(const MemoryModel& model, const DeploymentShape& base, int gpus, int per_node) {
  std::vector<LayoutOption> options;
  for (const DeploymentShape& layout : candidate_layouts(model.config(), gpus, per_node)) {
    LayoutOption option;
    option.shape = base;
    option.shape.tensor_parallel = layout.tensor_parallel;
    option.shape.pipeline_parallel = layout.pipeline_parallel;
    option.shape.data_parallel = layout.data_parallel;
    option.shape.enable_expert_parallel = layout.enable_expert_parallel;
    auto memory = model.plan(option.shape);
    option.valid = memory.ok();
    if (option.valid) {
      option.memory = *memory;
    } else {
      option.invalid_reason = memory.error().message;
    }
    options.push_back(std::move(option));
  }
  return options;
}

int pick_best(const std::vector<LayoutOption>& options) {
  int best = -1;
  for (int index = 0; index < static_cast<int>(options.size()); ++index) {
    if (!options[index].valid) continue;
    if (best < 0 || better(options[index], options[best])) best = index;
  }
  return best;
}

std::string explain_winner(const ModelConfig& config, const std::vector<LayoutOption>& options, int best) {
  const LayoutOption& winner = options[best];
  int runner_up = -1;
  for (int index = 0; index < static_cast<int>(options.size()); ++index) {
    if (index == best || !options[index].valid || !options[index].memory.fits) continue;
    if (runner_up < 0 || better(options[index], options[runner_up])) runner_up = index;
  }
  std::string why = fmt::format("{} holds {} KV tokens over {} replica(s) ({} concurrent {}-token sequences)",
                                winner.label(), winner.total_kv_tokens(), winner.shape.data_parallel,
                                winner.memory.max_concurrent_seqs, winner.memory.max_model_len);
  std::string pp_note;
  for (const LayoutOption& option : options) {
    if (option.valid && option.memory.fits && option.shape.pipeline_parallel > 1 &&
        winner.shape.pipeline_parallel == 1 && option.total_kv_tokens() > winner.total_kv_tokens()) {
      pp_note = fmt::format(". Pipeline layouts hold more ({} with {} tokens: each stage caches only its layers) "
                            "but add pipeline bubbles to every step, so PP is recommended only when nothing else fits",
                            option.label(), option.total_kv_tokens());
      break;
    }
  }
  if (runner_up < 0) return why + "; it is the only layout that fits" + pp_note;
  const LayoutOption& other = options[runner_up];
  const double ratio = static_cast<double>(winner.total_kv_tokens()) / std::max<int64_t>(1, other.total_kv_tokens());
  if (ratio > 1.0 + kTieFraction) {
    why += fmt::format(", {:.2f}x the {} of the runner-up {}", ratio, other.total_kv_tokens(), other.label());
    if (config.is_mla() && winner.shape.data_parallel > other.shape.data_parallel) {
      why += ": MLA caches one latent per token that every TP rank keeps whole, so TP does not shrink the KV per "
             "token, while each DP replica brings its own cache";
    } else if (winner.memory.weights_bytes < other.memory.weights_bytes) {
      why += fmt::format(": it needs {:.1f} GiB of weights per GPU instead of {:.1f} GiB",
                         winner.memory.weights_bytes / kGiB, other.memory.weights_bytes / kGiB);
    }
  } else {
    why += fmt::format(", as much as {} within 2%; the simpler layout wins (no pipeline bubbles, no expert "
                       "all-to-all, fewer replicas)",
                       other.label());
  }
  return why + pp_note;
}

std::string serve_command(const std::string& model, const LayoutOption& option, WeightDType checkpoint) {
  const DeploymentShape& s = option.shape;
  std::string command = "moeserve serve " + model;
  command += fmt::format(" --tensor-parallel-size {}", s.tensor_parallel);
  if (s.pipeline_parallel > 1) command += fmt::format(" --pipeline-parallel-size {}", s.pipeline_parallel);
  if (s.data_parallel > 1) command += fmt::format(" --data-parallel-size {}", s.data_parallel);
  if (s.enable_expert_parallel) command += " --enable-expert-parallel";
  const WeightDType dtype = option.memory.weight_dtype;
  if (dtype == WeightDType::kFp8 && checkpoint != WeightDType::kFp8) command += " --quantization fp8";
  if (dtype != WeightDType::kFp8 && dtype != checkpoint)
    command += fmt::format(" --dtype {}", weight_dtype_name(dtype));
  if (s.kv_cache_dtype != KvCacheDType::kAuto) {
    command += fmt::format(" --kv-cache-dtype {}", kv_cache_dtype_name(s.kv_cache_dtype));
  }
  command += fmt::format(" --max-model-len {} --max-num-seqs {} --max-num-batched-tokens {}",
                         option.memory.max_model_len, s.max_num_seqs, s.max_num_batched_tokens);
  command += fmt::format(" --gpu-memory-utilization {}", s.gpu_memory_utilization);
  if (s.enforce_eager) command += " --enforce-eager";
  return command;
}

}  // namespace

std::string LayoutOption::label() const {
  std::string text = fmt::format("TP={}", shape.tensor_parallel);
  if (shape.pipeline_parallel > 1) text += fmt::format(" PP={}", shape.pipeline_parallel);
  if (shape.data_parallel > 1) text += fmt::format(" DP={}", shape.data_parallel);
  if (shape.enable_expert_parallel) text += fmt::format(" EP={}", shape.expert_parallel());
  return text;
}

Result<ResolvedModel> resolve_model(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model, ec) || fs::is_regular_file(model, ec)) {
    const fs::path path = fs::is_directory(model, ec) ? fs::path(model) / "config.json" : fs::path(model);
    if (!fs::exists(path, ec)) return make_error("{} has no config.json", model);
    MS_ASSIGN_OR_RETURN(ModelConfig config, load_model_config(model));
    return ResolvedModel{model, path.string(), std::move(config)};
  }
  MS_ASSIGN_OR_RETURN(const CatalogModel* entry, find_catalog_model(model));
  auto config = parse_model_config(entry->config);
  if (!config.ok()) return config.error().with_context(entry->id);
  return ResolvedModel{entry->id, "catalog: " + entry->source, std::move(*config)};
}

std::vector<DeploymentShape> candidate_layouts(const ModelConfig& config, int gpus, int gpus_per_node) {
  std::vector<DeploymentShape> layouts;
  for (int tp = 1; tp <= std::min(gpus, gpus_per_node); ++tp) {
    if (gpus % tp != 0) continue;
    for (int pp = 1; pp <= gpus / tp; ++pp) {
      if ((gpus / tp) % pp != 0) continue;
      DeploymentShape shape;
      shape.tensor_parallel = tp;
      shape.pipeline_parallel = pp;
      shape.data_parallel = gpus / (tp * pp);
      layouts.push_back(shape);
      if (config.moe.has_value() && tp * shape.data_parallel > 1) {
        shape.enable_expert_parallel = true;
        layouts.push_back(shape);
      }
    }
  }
  return layouts;
}

namespace {

// What moeserve's CUDA backend does not do yet, said where it changes what `serve` runs of the
// plan's command (`command_gpus`: the GPUs it deploys on); issue 23 (multi-GPU speed) lifts it.
// (fp8 weights are held as fp8 on CUDA too: the planned sizes hold.)
void note_cuda_backend_limits(Plan& plan, int command_gpus, KvCacheDType kv_cache_dtype) {
  if (kv_cache_dtype == KvCacheDType::kAuto && plan.dtype != WeightDType::kF32) {
    plan.notes.push_back(
        "moeserve's CUDA backend stores an auto KV cache as float32, not in the model's 16-bit dtype as vLLM does, "
        "and this plan counts it so: half the KV tokens vLLM would hold; --kv-cache-dtype fp8 stores e4m3 bytes");
  }
  if (command_gpus > 1) {
    plan.notes.push_back(
        "moeserve's CUDA backend runs a multi-GPU layout as vLLM does, a worker process per GPU with its TP and EP "
        "collectives over NCCL, but its parallel steps run without CUDA graphs and without overlapping "
        "communication, and its multi-GPU speed is not measured yet: `serve` runs this command with the outputs "
        "of one GPU; the layouts above size each GPU for moeserve's own ranks");
  }
}

}  // namespace

Result<Plan> make_plan(const ResolvedModel& resolved, const PlanRequest& request) {
  if (request.gpus.gpu == nullptr || request.gpus.count < 1) return make_error("no GPUs to plan for");
  const MemoryModel model(resolved.config);
  Plan plan;
  plan.model = resolved.id;
  plan.params = model.params();
  plan.dtype = model.resolve(request.dtype);
  plan.mxfp4_experts = resolved.config.mxfp4_experts;
  plan.weight_bytes_total = model.weight_bytes(plan.dtype, plan.mxfp4_experts);
  plan.kv_bytes_per_token = model.kv_bytes_per_token(request.kv_cache_dtype);
  plan.gpus = request.gpus;
  const GpuSpec& gpu = *request.gpus.gpu;
  if (plan.dtype == WeightDType::kFp8 && !gpu.fp8_tensor_cores) {
    plan.notes.push_back(fmt::format("{} has no FP8 tensor cores: fp8 weights save memory but run weight-only "
                                     "(dequantized to 16 bits in the GEMM), without FP8 compute speed",
                                     gpu.name));
  }
  if (request.kv_cache_dtype == KvCacheDType::kFp8 && !gpu.fp8_tensor_cores) {
    plan.notes.push_back(fmt::format("{} has no FP8 support in attention kernels for an fp8 KV cache", gpu.name));
  }
  if (const std::vector<std::string> missing = cuda_missing_features(resolved.config); !missing.empty()) {
    plan.notes.push_back(fmt::format("the CUDA backend does not run {} yet (no kernels for {}): serve refuses it "
                                     "on GPUs and runs it with --device cpu; the layouts size the GPUs for when "
                                     "it does",
                                     resolved.config.architecture_name, fmt::join(missing, ", ")));
  }
  const DeploymentShape base = base_shape(request);
  plan.layouts = evaluate(model, base, request.gpus.count, gpu.gpus_per_node);
  plan.best = pick_best(plan.layouts);
  if (plan.best < 0) {
    return make_error("no parallel layout of {} is valid for {}: {}", request.gpus.label(), resolved.id,
                      plan.layouts.empty() ? "no layouts" : plan.layouts.front().invalid_reason);
  }
  const LayoutOption& best = plan.layouts[plan.best];
  plan.fits = best.memory.fits;
  const WeightDType checkpoint = model.checkpoint_dtype();
  if (plan.fits) {
    plan.why = explain_winner(resolved.config, plan.layouts, plan.best);
    plan.command = serve_command(resolved.id, best, checkpoint);
    note_cuda_backend_limits(plan, request.gpus.count, request.kv_cache_dtype);
    return plan;
  }
  plan.why =
      fmt::format("nothing fits on {}; closest: {}: {}", request.gpus.label(), best.label(), best.memory.verdict);
  for (int count : kGpuCounts) {
    if (count <= request.gpus.count) continue;
    std::vector<LayoutOption> options = evaluate(model, base, count, gpu.gpus_per_node);
    const int index = pick_best(options);
    if (index >= 0 && options[index].memory.fits) {
      plan.smallest_fit = options[index];
      plan.smallest_gpus = GpuSet{&gpu, count};
      plan.command = serve_command(resolved.id, options[index], checkpoint);
      break;
    }
  }
  if (plan.dtype != WeightDType::kFp8) {
    PlanRequest fp8 = request;
    fp8.dtype = WeightDType::kFp8;
    DeploymentShape fp8_base = base_shape(fp8);
    std::vector<LayoutOption> options = evaluate(model, fp8_base, request.gpus.count, gpu.gpus_per_node);
    const int index = pick_best(options);
    if (index >= 0 && options[index].memory.fits) {
      plan.notes.push_back(
          fmt::format("with --dtype fp8 it fits on {}: {}", request.gpus.label(), options[index].label()));
    }
  }
  note_cuda_backend_limits(plan, plan.smallest_fit ? plan.smallest_gpus.count : request.gpus.count,
                           request.kv_cache_dtype);
  return plan;
}

}  // namespace moeserve::plan
