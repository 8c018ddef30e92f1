// MemoryModel::validate and MemoryModel::plan: which layouts vLLM accepts for a model, and the
// per-GPU budget of one that it accepts.
#include <algorithm>

#include <fmt/format.h>

#include "model/parallel.h"
#include "plan/memory_model.h"

namespace moeserve::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Status check_split(int64_t size, int64_t parts, int block, const char* what, int tp_like) {
  if (size % parts != 0) {
    return make_error("{} {} is not divisible by {} ranks", what, size, tp_like);
  }
  if (block > 0 && (size / parts) % block != 0) {
    return make_error("{} {} split over {} ranks gives {} per rank, not a multiple of the fp8 weight block {}", what,
                      size, parts, size / parts, block);
  }
  return ok_status();
}

}  // namespace

Status MemoryModel::validate(const DeploymentShape& shape) const {
  const int tp = shape.tensor_parallel, pp = shape.pipeline_parallel, dp = shape.data_parallel;
  if (tp < 1 || pp < 1 || dp < 1) return make_error("parallel sizes must be at least 1 (tp {}, pp {}, dp {})", tp, pp, dp);
  if (shape.block_size < 1) return make_error("--block-size must be positive, got {}", shape.block_size);
  if (!(shape.gpu_memory_utilization > 0.0 && shape.gpu_memory_utilization <= 1.0)) {
    return make_error("--gpu-memory-utilization must be in (0, 1], got {}", shape.gpu_memory_utilization);
  }
  if (shape.device_memory_bytes <= 0) return make_error("the device memory must be positive");
  if (shape.max_num_seqs < 1) return make_error("--max-num-seqs must be at least 1, got {}", shape.max_num_seqs);
  if (shape.max_num_batched_tokens < shape.max_num_seqs) {
    return make_error("--max-num-batched-tokens ({}) must be at least --max-num-seqs ({})",
                      shape.max_num_batched_tokens, shape.max_num_seqs);
  }
  if (shape.max_model_len < 0) return make_error("--max-model-len must be positive, got {}", shape.max_model_len);
  if (shape.max_model_len > config_.max_position_embeddings) {
    return make_error("--max-model-len {} exceeds the model's max_position_embeddings {}", shape.max_model_len,
                      config_.max_position_embeddings);
  }
  if (config_.num_heads % tp != 0) {
    return make_error("tensor parallel size {} does not divide the {} attention heads", tp, config_.num_heads);
  }
  if (!config_.is_mla() && config_.num_kv_heads % tp != 0 && tp % config_.num_kv_heads != 0) {
    return make_error("tensor parallel size {} neither divides nor is a multiple of the {} KV heads", tp,
                      config_.num_kv_heads);
  }
  if (pp > config_.num_layers) {
    return make_error("pipeline parallel size {} exceeds the {} layers", pp, config_.num_layers);
  }
  const bool fp8 = resolve(shape.dtype) == WeightDType::kFp8;
  const int block = fp8 && config_.fp8_block_size.has_value() ? (*config_.fp8_block_size)[0] : 0;
  const bool has_dense = std::find(config_.layer_is_moe.begin(), config_.layer_is_moe.end(), false) !=
                         config_.layer_is_moe.end();
  if (has_dense) MS_RETURN_IF_ERROR(check_split(config_.intermediate_size, tp, block, "intermediate_size", tp));
  if (!config_.moe.has_value()) {
    if (shape.enable_expert_parallel) return make_error("--enable-expert-parallel needs a MoE model");
    return ok_status();
  }
  const MoeConfig& moe = *config_.moe;
  const int moe_ranks = tp * dp;
  if (shape.enable_expert_parallel && moe_ranks > 1) {
    if (moe_ranks > moe.num_experts) {
      return make_error("expert parallel size {} (TP {} × DP {}) exceeds the {} experts", moe_ranks, tp, dp,
                        moe.num_experts);
    }
  } else {
    MS_RETURN_IF_ERROR(check_split(moe.expert_intermediate_size, moe_ranks, block, "moe intermediate size", moe_ranks));
  }
  if (moe.shared_intermediate_size > 0) {
    MS_RETURN_IF_ERROR(check_split(moe.shared_intermediate_size, tp, block, "shared expert intermediate size", tp));
  }
  return ok_status();
}

Result<MemoryBreakdown> MemoryModel::plan(const DeploymentShape& shape) const {
  MS_RETURN_IF_ERROR(validate(shape));
  MemoryBreakdown out;
  out.weight_dtype = resolve(shape.dtype);
  out.kv_cache_dtype = shape.kv_cache_dtype;
  out.max_model_len = shape.max_model_len > 0 ? shape.max_model_len : config_.max_position_embeddings;
  const int act_bytes = out.weight_dtype == WeightDType::kF32 ? 4 : 2;
  out.budget_bytes = static_cast<int64_t>(static_cast<double>(shape.device_memory_bytes) * shape.gpu_memory_utilization);
  out.mxfp4_experts = keeps_mxfp4(shape);
  // The runner's CUDA graphs replay in its step arena: their capture, after the KV cache is sized,
  // adds no memory pool to plan for.
  out.activation_bytes = step_arena_bytes(shape, out.weight_dtype, out.mxfp4_experts);
  out.runtime_bytes = runtime_bytes();
  out.comm_buffer_bytes = comm_buffer_bytes(shape, act_bytes);
  const int64_t element_bytes = kv_element_bytes(shape.kv_cache_dtype);
  const int64_t per_layer = kv_entry_size(config_, Partition{0, shape.tensor_parallel});
  out.kv_blocks = INT64_MAX;
  out.weights_fit = true;
  for (int stage = 0; stage < shape.pipeline_parallel; ++stage) {
    const int64_t weights = stage_weight_bytes(shape, out.weight_dtype, stage, out.mxfp4_experts);
    const auto [first, last] = stage_layers(config_.num_layers, shape.pipeline_parallel, stage);
    const int64_t kv_per_token = per_layer * (last - first) * element_bytes;
    const int64_t left = out.budget_bytes - weights - out.activation_bytes - out.runtime_bytes - out.comm_buffer_bytes;
    if (weights >= out.weights_bytes) {
      out.weights_bytes = weights;
      out.kv_bytes_per_token = std::max(out.kv_bytes_per_token, kv_per_token);
    }
    if (weights > out.budget_bytes) out.weights_fit = false;
    const int64_t blocks = left > 0 && kv_per_token > 0 ? left / (kv_per_token * shape.block_size) : 0;
    if (blocks < out.kv_blocks) {
      out.kv_blocks = blocks;
      out.kv_cache_bytes = std::max<int64_t>(0, left);
    }
  }
  out.kv_tokens = out.kv_blocks * shape.block_size;
  const int64_t needed_blocks = ceil_div(out.max_model_len, shape.block_size);
  const int64_t per_replica = std::min<int64_t>(shape.max_num_seqs, out.kv_tokens / out.max_model_len);
  out.max_concurrent_seqs = per_replica * shape.data_parallel;
  out.fits = out.weights_fit && out.kv_blocks >= needed_blocks;
  const int64_t overhead = out.activation_bytes + out.runtime_bytes + out.comm_buffer_bytes;
  if (!out.weights_fit) {
    out.verdict = fmt::format("weights need {:.1f} GiB per GPU but only {:.1f} GiB are usable", out.weights_bytes / kGiB,
                              out.budget_bytes / kGiB);
  } else if (!out.fits) {
    out.verdict = fmt::format(
        "weights ({:.1f} GiB) and the step arena, runtime and buffers ({:.1f} GiB) leave {:.2f} GiB for the KV cache: {} "
        "tokens, less than one {}-token sequence",
        out.weights_bytes / kGiB, overhead / kGiB, out.kv_cache_bytes / kGiB, out.kv_tokens, out.max_model_len);
  } else {
    out.verdict = fmt::format("fits: {} KV tokens per replica, {} concurrent {}-token sequences", out.kv_tokens,
                              out.max_concurrent_seqs, out.max_model_len);
  }
  return out;
}

}  // namespace moeserve::plan
