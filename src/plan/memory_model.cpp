// The memory arithmetic. Estimates that are not exact byte counts (activation peak, CUDA-graph
// pool, NCCL buffers) are written as formulas of the shape with their constants named, and
// docs/planning.md explains each one.
#include "plan/memory_model.h"

#include <algorithm>
#include <functional>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "model/parallel.h"
#include "model/step_workspace.h"

namespace moeserve::plan {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
// vLLM's fused MoE processes at most this many tokens at once (VLLM_FUSED_MOE_CHUNK_SIZE).
constexpr int64_t kFusedMoeChunkTokens = 32768;
// What a CUDA runner holds besides its weights, step arena and KV cache: the CUDA context,
// cuBLAS/cuBLASLt handles and workspaces, device buffers of the packed step inputs, and the
// sampler's workspace (64 rows of the vocabulary: sort keys, ids and cub's temporary storage).
// Fitted to one H100 lease's runners (bench/results/2026-12-07-h100-workspace-bound.json: total ×
// 0.9 − weights − arena − KV cache of 8 runs of 4 models, vocabularies 32,000 to 163,840): base
// + per vocabulary entry, each run within 0.07 GiB of the fit.
constexpr int64_t kCudaRuntimeBytes = int64_t{741} * kMiB;
constexpr int64_t kCudaRuntimeBytesPerVocabEntry = 1541;
// linear_fp8's cuBLASLt workspace (kernels/cuda/gemm_fp8.cu).
constexpr int64_t kFp8LtWorkspaceBytes = 32 * kMiB;
// One NCCL communicator: channels × (SIMPLE + LL128 buffers of NCCL_BUFFSIZE = 4 MiB).
constexpr int64_t kNcclChannels = 16;
constexpr int64_t kNcclBufferBytes = 4 * kMiB;
constexpr int64_t kNcclCommunicatorBytes = kNcclChannels * 2 * kNcclBufferBytes;
// vLLM's custom all-reduce: an 8 MiB IPC buffer, double-buffered.
constexpr int64_t kCustomAllReduceBytes = 2 * 8 * kMiB;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

Result<WeightDType> parse_weight_dtype(const std::string& text) {
  if (text == "auto") return WeightDType::kAuto;
  if (text == "bfloat16" || text == "bf16") return WeightDType::kBF16;
  if (text == "float16" || text == "half" || text == "fp16") return WeightDType::kF16;
  if (text == "float32" || text == "float") return WeightDType::kF32;
  if (text == "fp8") return WeightDType::kFp8;
  return make_error("--dtype '{}' is not supported (supported: auto, bfloat16, float16, float32, fp8)", text);
}

Result<KvCacheDType> parse_kv_cache_dtype(const std::string& text) {
  if (text == "auto") return KvCacheDType::kAuto;
  if (text == "fp8" || text == "fp8_e4m3") return KvCacheDType::kFp8;
  if (text == "float32") return KvCacheDType::kF32;
  return make_error("--kv-cache-dtype '{}' is not supported (supported: auto, fp8, fp8_e4m3, float32)", text);
}

const char* weight_dtype_name(WeightDType dtype) {
  switch (dtype) {
    case WeightDType::kAuto: return "auto";
    case WeightDType::kBF16: return "bfloat16";
    case WeightDType::kF16: return "float16";
    case WeightDType::kF32: return "float32";
    case WeightDType::kFp8: return "fp8";
  }
  return "?";
}

const char* kv_cache_dtype_name(KvCacheDType dtype) {
  switch (dtype) {
    case KvCacheDType::kAuto: return "auto";
    case KvCacheDType::kFp8: return "fp8";
    case KvCacheDType::kF32: return "float32";
  }
  return "?";
}

std::pair<int, int> stage_layers(int num_layers, int pipeline_parallel, int stage) {
  std::vector<int> sizes(pipeline_parallel, num_layers / pipeline_parallel);
  const int remaining = num_layers % pipeline_parallel;
  for (int index = 2; index < remaining + 2; ++index) sizes[pipeline_parallel - index] += 1;
  int begin = 0;
  for (int s = 0; s < stage; ++s) begin += sizes[s];
  return {begin, begin + sizes[stage]};
}

MemoryModel::MemoryModel(const ModelConfig& config)
    : config_(config), weights_(WeightPlan::build(config)), params_(count_params(config, weights_)) {}

WeightDType MemoryModel::checkpoint_dtype() const {
  if (config_.fp8_block_size.has_value()) return WeightDType::kFp8;
  switch (config_.dtype) {
    case DType::kF16: return WeightDType::kF16;
    case DType::kF32: return WeightDType::kF32;
    default: return WeightDType::kBF16;
  }
}

WeightDType MemoryModel::resolve(WeightDType dtype) const {
  return dtype == WeightDType::kAuto ? checkpoint_dtype() : dtype;
}

// Bytes of a [rows, cols] × count shard stored as `dtype`. FP8 keeps non-Linear tensors in
// the 16-bit activation dtype; its Linear weights carry fp32 scales per 128×128 block (fp8
// checkpoints) or one per tensor (online quantization of a 16-bit checkpoint). MXFP4 routed
// expert matrices hold 16 bytes of e2m1 pairs and one e8m0 scale per 32 columns of a row.
static int64_t shard_bytes(const WeightEntry& group, int64_t rows, int64_t cols, int64_t count, WeightDType dtype,
                           const std::array<int, 2>& block, bool mxfp4_experts) {
  const int64_t elements = rows * cols * count;
  if (mxfp4_experts && group.component == Component::kRoutedExperts && group.shape.rank() == 2) {
    return count * rows * ceil_div(cols, 32) * 17;
  }
  if (group.keep_fp32 || dtype == WeightDType::kF32) return elements * 4;
  if (dtype != WeightDType::kFp8 || !group.quantizable) return elements * 2;
  if (block[0] > 0 && block[1] > 0) {
    return elements + count * ceil_div(rows, block[0]) * ceil_div(cols, block[1]) * 4;
  }
  return elements + count * 4;
}

int64_t MemoryModel::weight_bytes(WeightDType dtype, bool mxfp4_experts) const {
  DeploymentShape single;
  return stage_weight_bytes(single, resolve(dtype), 0, mxfp4_experts && config_.mxfp4_experts);
}

bool MemoryModel::keeps_mxfp4(const DeploymentShape& shape) const {
  return config_.mxfp4_experts && shape.tensor_parallel * shape.data_parallel == 1;
}

int64_t MemoryModel::stage_weight_bytes(const DeploymentShape& shape, WeightDType dtype, int stage,
                                        bool mxfp4_experts) const {
  const int tp = shape.tensor_parallel;
  const int moe_ranks = shape.tensor_parallel * shape.data_parallel;
  const bool ep = shape.enable_expert_parallel && moe_ranks > 1;
  const auto [first, last] = stage_layers(config_.num_layers, shape.pipeline_parallel, stage);
  const bool first_stage = stage == 0;
  const bool last_stage = stage == shape.pipeline_parallel - 1;
  std::array<int, 2> block{0, 0};  // [0, 0]: per-tensor scales
  if (dtype == WeightDType::kFp8 && config_.fp8_block_size.has_value()) block = *config_.fp8_block_size;
  int64_t total = 0;
  for (const WeightEntry& group : weights_.entries()) {
    if (group.mtp) continue;
    bool here = group.layer >= 0 ? (group.layer >= first && group.layer < last) : false;
    if (group.component == Component::kEmbedding) {
      // A tied lm_head reuses the embedding, which the last stage then holds as well.
      here = first_stage || (last_stage && config_.tie_word_embeddings);
    } else if (group.layer < 0) {
      here = last_stage;  // final norm, lm_head
    }
    if (!here) continue;
    int64_t rows = group.rows(), cols = group.cols(), count = group.count;
    switch (group.sharding) {
      case Sharding::kReplicated: break;
      case Sharding::kColumn:
      case Sharding::kVocab: rows = ceil_div(rows, tp); break;
      case Sharding::kRow: cols = ceil_div(cols, tp); break;
      case Sharding::kKvHeads:
        rows = rows * std::max(1, config_.num_kv_heads / tp) / config_.num_kv_heads;
        break;
      case Sharding::kExpertColumn:
        if (ep) count = ceil_div(count, moe_ranks); else rows = ceil_div(rows, moe_ranks);
        break;
      case Sharding::kExpertRow:
        if (ep) count = ceil_div(count, moe_ranks); else cols = ceil_div(cols, moe_ranks);
        break;
    }
    total += shard_bytes(group, rows, cols, count, dtype, block, mxfp4_experts);
  }
  return total;
}

int64_t MemoryModel::kv_elements_per_token_per_layer() const {
  return kv_entry_size(config_);
}

int64_t MemoryModel::kv_element_bytes(KvCacheDType dtype) const {
  switch (dtype) {
    case KvCacheDType::kFp8: return 1;
    case KvCacheDType::kF32: return 4;
    case KvCacheDType::kAuto:
      return 4;  // moeserve's CUDA cache: float32 (vLLM's: 16-bit)
  }
  return 4;
}

int64_t MemoryModel::kv_bytes_per_token(KvCacheDType dtype) const {
  return kv_elements_per_token_per_layer() * config_.num_layers * kv_element_bytes(dtype);
}

int64_t MemoryModel::cpu_replica_kv_bytes_per_token(int tensor_parallel, KvCacheDType dtype) const {
  int64_t elements = 0;
  for (int rank = 0; rank < tensor_parallel; ++rank) elements += kv_entry_size(config_, Partition{rank, tensor_parallel});
  const KvCacheDType held = dtype == KvCacheDType::kFp8 ? KvCacheDType::kFp8 : KvCacheDType::kF32;
  return elements * config_.num_layers * kv_element_bytes(held);
}

int64_t MemoryModel::cpu_kv_blocks(int64_t kv_cache_bytes, int block_size, int tensor_parallel,
                                   KvCacheDType dtype) const {
  const int64_t block_bytes = int64_t{block_size} * cpu_replica_kv_bytes_per_token(tensor_parallel, dtype);
  return std::min<int64_t>(kv_cache_bytes / block_bytes, int64_t{1} << 24);
}

int64_t MemoryModel::step_arena_bytes(const DeploymentShape& shape, WeightDType dtype, bool mxfp4_experts) const {
  const MoeConfig* moe = config_.moe ? &*config_.moe : nullptr;
  const bool experts_large = moe && !moe->expert_bias && !moe->clamped_swiglu && !mxfp4_experts;
  std::function<size_t(int)> fp8_gemm_bytes;
  if (dtype == WeightDType::kFp8) {
    // The largest fp8 matrix as the runner fuses it (q/k/v, gate/up of an MLP or an expert).
    std::map<std::pair<int, PackGroup>, std::pair<int64_t, int64_t>> fused;  // rows, cols
    int64_t most_rows = 0, most_cols = 0;
    for (const WeightEntry& group : weights_.entries()) {
      if (group.mtp || !group.quantizable || group.shape.rank() != 2) continue;
      std::pair<int64_t, int64_t> matrix{group.rows(), group.cols()};
      if (group.pack != PackGroup::kNone) {
        auto& sum = fused[{group.layer, group.pack}];
        sum = {sum.first + group.rows(), group.cols()};
        matrix = sum;
      }
      if (matrix.first * matrix.second > most_rows * most_cols) std::tie(most_rows, most_cols) = matrix;
    }
    fp8_gemm_bytes = [=](int rows) {
      const int64_t quantized = most_cols % 128 == 0 ? int64_t{rows} * most_cols + kFp8LtWorkspaceBytes : 0;
      return static_cast<size_t>(most_rows * most_cols * 2 + quantized);
    };
  }
  const int logit_rows = shape.max_logit_rows > 0 ? shape.max_logit_rows
                                                  : std::min(shape.max_num_seqs, shape.max_num_batched_tokens);
  return static_cast<int64_t>(
      cuda::step_workspace_bytes(config_, shape.max_num_batched_tokens, experts_large, fp8_gemm_bytes, logit_rows));
}

int64_t MemoryModel::runtime_bytes() const {
  return kCudaRuntimeBytes + kCudaRuntimeBytesPerVocabEntry * config_.vocab_size;
}

int64_t MemoryModel::comm_buffer_bytes(const DeploymentShape& shape, int act_bytes) const {
  int64_t total = 0;
  const int64_t tokens = shape.max_num_batched_tokens;
  if (shape.tensor_parallel > 1) total += kNcclCommunicatorBytes + kCustomAllReduceBytes;
  if (shape.pipeline_parallel > 1) total += kNcclCommunicatorBytes + 2 * tokens * config_.hidden_size * act_bytes;
  const int64_t moe_ranks = shape.tensor_parallel * shape.data_parallel;
  if (config_.moe.has_value() && shape.data_parallel > 1) {
    // The EP/DP group's communicator plus dispatch and combine buffers for all DP ranks' tokens.
    const int64_t gathered = std::min<int64_t>(tokens * shape.data_parallel, kFusedMoeChunkTokens);
    total += kNcclCommunicatorBytes + 2 * gathered * config_.hidden_size * act_bytes;
  } else if (shape.enable_expert_parallel && moe_ranks > 1) {
    total += 2 * tokens * config_.hidden_size * act_bytes;
  }
  return total;
}

}  // namespace moeserve::plan
