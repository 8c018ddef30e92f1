// MemoryModel: the one arithmetic that sizes a deployment — weight bytes per dtype (bf16, fp8
// with block or per-tensor scales, GPT-OSS's MXFP4 experts), KV-cache bytes per token (GQA: 2 ×
// kv_heads × head_dim; MLA: kv_lora_rank + qk_rope_head_dim), the CUDA runner's step arena for
// max_num_batched_tokens (model/step_workspace.h, the bound the runner reserves), the CUDA runtime
// and communication buffers, and from what is left the KV blocks the engine allocates — per GPU,
// under a TP/PP/DP(/EP) layout with vLLM's semantics (attention and dense weights split over TP
// and replicated over DP; with --enable-expert-parallel the experts are placed whole over EP = TP
// × DP, without it they are tensor-split over TP × DP; PP splits the layer stack). `moeserve plan`
// and engine start-up both call it, so the plan and the allocation cannot disagree.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "model/config.h"
#include "plan/weights.h"

namespace moeserve::plan {

// How weights are stored on the device. kFp8 on an fp8 checkpoint keeps its block scales; on a
// bf16 checkpoint it is vLLM's online `--quantization fp8` (one fp32 scale per tensor).
enum class WeightDType { kAuto, kBF16, kF16, kF32, kFp8 };
// kAuto = what moeserve's CUDA backend stores for --kv-cache-dtype auto: float32 (vLLM stores the
// model's 16-bit dtype); kFp8 = e4m3, one byte per element; kF32 = float32 (the CPU's cache).
enum class KvCacheDType { kAuto, kFp8, kF32 };

Result<WeightDType> parse_weight_dtype(const std::string& text);    // auto|bfloat16|float16|float32|fp8
Result<KvCacheDType> parse_kv_cache_dtype(const std::string& text);  // auto|fp8|fp8_e4m3|float32
const char* weight_dtype_name(WeightDType dtype);
const char* kv_cache_dtype_name(KvCacheDType dtype);

// A deployment: one model replica spans tensor_parallel × pipeline_parallel GPUs, and
// data_parallel replicas run side by side. Invariant after validate(): all sizes ≥ 1 and the
// layout divides the model the way vLLM requires.
struct DeploymentShape {
  int tensor_parallel = 1;
  int pipeline_parallel = 1;
  int data_parallel = 1;
  bool enable_expert_parallel = false;
  WeightDType dtype = WeightDType::kAuto;
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
  int max_model_len = 0;           // 0 = the model's max_position_embeddings
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  // Logit rows a step's arena holds: 0 = serve's, one a sequence (min(max_num_seqs,
  // max_num_batched_tokens)); a runner for every row's logits (bench latency) holds
  // max_num_batched_tokens.
  int max_logit_rows = 0;
  int block_size = 16;             // tokens per KV block
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;      // no CUDA graphs
  int64_t device_memory_bytes = 0; // per GPU

  int gpus() const { return tensor_parallel * pipeline_parallel * data_parallel; }
  int expert_parallel() const { return enable_expert_parallel ? tensor_parallel * data_parallel : 1; }
};

// What one GPU holds (the most loaded pipeline stage). Invariant: kv_tokens == kv_blocks ×
// block_size, and kv_blocks ≥ 0.
struct MemoryBreakdown {
  WeightDType weight_dtype = WeightDType::kBF16;  // resolved
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
  int max_model_len = 0;                          // resolved
  int64_t budget_bytes = 0;           // device memory × gpu_memory_utilization
  int64_t weights_bytes = 0;
  bool mxfp4_experts = false;         // the routed experts stay MXFP4 as published (keeps_mxfp4)
  int64_t activation_bytes = 0;       // the CUDA runner's step arena (model/step_workspace.h)
  int64_t runtime_bytes = 0;          // CUDA context, libraries, the sampler (kCudaRuntime*)
  int64_t comm_buffer_bytes = 0;
  int64_t kv_cache_bytes = 0;         // budget left for the KV cache (0 when the rest overflows)
  int64_t kv_bytes_per_token = 0;     // this GPU's share of one token's KV (its layers, its heads)
  int64_t kv_blocks = 0;
  int64_t kv_tokens = 0;              // per replica (every GPU of a replica holds the same tokens)
  int64_t max_concurrent_seqs = 0;    // full-length sequences over all DP replicas
  bool weights_fit = false;
  bool fits = false;                  // weights fit and at least one max_model_len sequence fits
  std::string verdict;                // one line: why it fits or not
};

class MemoryModel {
 public:
  explicit MemoryModel(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const WeightPlan& weights() const { return weights_; }
  const ParamCounts& params() const { return params_; }

  // The checkpoint's own storage: fp8 when config.json carries an fp8 quantization_config.
  WeightDType checkpoint_dtype() const;
  WeightDType resolve(WeightDType dtype) const;
  // Bytes of all served weights (no MTP), unsharded; with `mxfp4_experts`, a GPT-OSS checkpoint's
  // routed experts as published (per 32 values, 16 bytes of e2m1 pairs and an e8m0 scale).
  int64_t weight_bytes(WeightDType dtype, bool mxfp4_experts = false) const;
  // Whether a layout keeps an MXFP4 checkpoint's experts so: the CUDA runner does where one rank
  // holds every expert whole (no TP or EP split of the MoE); the CPU and split layouts
  // dequantize them to bf16 at load.
  bool keeps_mxfp4(const DeploymentShape& shape) const;
  // KV elements one token adds per layer: GQA 2 × kv_heads × head_dim, MLA latent + rope key.
  int64_t kv_elements_per_token_per_layer() const;
  int64_t kv_element_bytes(KvCacheDType dtype) const;
  // Whole model, all layers, unsharded.
  int64_t kv_bytes_per_token(KvCacheDType dtype) const;

  // Refuses layouts vLLM refuses (heads not divisible by TP, more stages than layers, experts
  // fewer than EP ranks, fp8 blocks split by TP, ...) with the reason.
  Status validate(const DeploymentShape& shape) const;
  Result<MemoryBreakdown> plan(const DeploymentShape& shape) const;

  // One DP replica's KV bytes per token on the CPU, all layers, summed over its TP ranks:
  // GQA ranks split the KV heads between them (replicated heads counted on every rank that holds
  // them); each rank of an MLA model holds the whole latent, so MLA costs TP times the entry.
  // The CPU's cache holds float32 elements (kAuto, kF32) or e4m3 bytes (kFp8: a quarter).
  int64_t cpu_replica_kv_bytes_per_token(int tensor_parallel = 1, KvCacheDType dtype = KvCacheDType::kF32) const;
  // The CPU engine's KV allocation: a replica's byte budget of `dtype` entries split into blocks
  // of block_size tokens over all layers and its TP ranks. Returns the block count each rank
  // allocates.
  int64_t cpu_kv_blocks(int64_t kv_cache_bytes, int block_size, int tensor_parallel = 1,
                        KvCacheDType dtype = KvCacheDType::kF32) const;

 private:
  int64_t stage_weight_bytes(const DeploymentShape& shape, WeightDType dtype, int stage, bool mxfp4_experts) const;
  // The CUDA runner's step arena on a GPU of `shape` (cuda::step_workspace_bytes): past 256 rows
  // the experts run one at a time, except GPT-OSS's (biases, the clamped SwiGLU, MXFP4), which
  // stream; with fp8 weights, the largest fp8 GEMM's scratch (its bf16 copy, the quantized
  // activations, cuBLASLt's 32 MiB). An expert-parallel rank has the same arena: its dispatch
  // runs in as many rounds as that leaves room for.
  int64_t step_arena_bytes(const DeploymentShape& shape, WeightDType dtype, bool mxfp4_experts) const;
  // What a CUDA runner holds besides weights, arena and KV cache (kCudaRuntimeBytes).
  int64_t runtime_bytes() const;
  int64_t comm_buffer_bytes(const DeploymentShape& shape, int act_bytes) const;

  ModelConfig config_;
  WeightPlan weights_;
  ParamCounts params_;
};

// First and one-past-last decoder layer of pipeline stage `stage` (vLLM's even split; the
// remainder goes to the last stages).
std::pair<int, int> stage_layers(int num_layers, int pipeline_parallel, int stage);

}  // namespace moeserve::plan
