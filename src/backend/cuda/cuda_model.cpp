// CudaModel: its step sizing and the one decoder loop over the CUDA step backend.
#include "backend/cuda/cuda_model.h"

#include <algorithm>

#include "model/parallel.h"
#include "backend/cuda/cuda_step_backend.h"

namespace moeserve::cuda {

void OpProfile::begin(const char* name, void* stream) {
  open_.push_back(spans_.size());
  spans_.push_back(Span{name, std::make_unique<EventTimer>()});
  spans_.back().timer->start(stream);
}

void OpProfile::end(void* stream) {
  spans_[open_.back()].timer->stop(stream);
  open_.pop_back();
}

std::vector<std::pair<std::string, double>> OpProfile::totals() const {
  std::vector<std::pair<std::string, double>> out;
  for (const Span& span : spans_) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& entry) { return entry.first == span.name; });
    if (it == out.end()) it = out.insert(out.end(), {span.name, 0.0});
    it->second += span.timer->seconds();
  }
  return out;
}

int CudaModel::kv_entry_size() const { return moeserve::kv_entry_size(config_, shard_.tp); }

namespace {

// Bytes an FP8 matrix's prefill-sized GEMM of up to `rows` rows may need, at most: the bf16 copy
// cuBLAS multiplies (CudaStepBackend::bf16_weights; one matrix at a time, a routed expert's own)
// plus linear_fp8's quantized activations and cuBLASLt workspace.
size_t fp8_gemm_bytes(const ModelWeights& weights, int rows) {
  size_t most = 0;
  const auto see = [&](const Projection& w) {
    if (w.dtype != DType::kF8E4M3) return;
    const size_t quantized = w.in % kFp8Group == 0 ? linear_fp8_workspace_bytes(rows, w.out, w.in) : 0;
    most = std::max(most, size_t(w.out) * w.in * sizeof(uint16_t) + quantized);
  };
  for (const LayerWeights& layer : weights.layers) {
    for (const Projection* w :
         {&layer.gqa.qkv, &layer.gqa.o, &layer.mla.q, &layer.mla.q_a, &layer.mla.q_b, &layer.mla.kv_a, &layer.mla.o,
          &layer.mla.indexer_q, &layer.mlp.gate_up, &layer.mlp.down, &layer.moe.experts_gate_up,
          &layer.moe.experts_down, &layer.moe.shared.gate_up, &layer.moe.shared.down}) {
      see(*w);
    }
  }
  return most;
}

}  // namespace

size_t CudaModel::workspace_bytes(int max_tokens, int max_logit_rows) const {
  // With expert parallelism the dispatch sizes its rounds from what the arena has free (several
  // rounds where one does not fit, model/moe_dispatch.cpp), so the same bound serves.
  bool large = true;
  for (const LayerWeights& layer : weights_.layers) {
    if (layer.moe.num_experts > 0 && !experts_run_large(layer.moe, precision_)) large = false;
  }
  return cuda::step_workspace_bytes(
      config_, max_tokens, large, [&](int rows) { return fp8_gemm_bytes(weights_, rows); }, max_logit_rows);
}

size_t CudaModel::expert_bytes(int layer) const { return expert_slot_bytes(weights_.layers[layer].moe); }

void CudaModel::copy_slot(int layer, int slot, std::byte* dst) const {
  for (const auto& segment : expert_slot_segments(weights_.layers[layer].moe, slot)) {
    if (!segment.empty()) copy_to_host(dst, segment.data(), segment.size(), exec_.stream);
    dst += segment.size();
  }
  synchronize_stream(exec_.stream);
}

void CudaModel::set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                              std::span<const std::byte* const> slots) {
  MoeWeights& w = weights_.layers[layer].moe;
  MS_CHECK(static_cast<int>(slots.size()) == w.num_slots && map->slots_per_rank() == w.num_slots);
  // The sources are host copies, so no slot's new expert is overwritten before it is read.
  for (int j = 0; j < w.num_slots; ++j) {
    const std::byte* src = slots[j];
    for (const auto& segment : expert_slot_segments(w, j)) {
      if (!segment.empty()) copy_to_device(segment.data(), src, segment.size(), exec_.stream);
      src += segment.size();
    }
  }
  synchronize_stream(exec_.stream);  // before the caller frees the host bytes
  w.map = std::move(map);
}

bool experts_stream(const ModelConfig& config, int tokens) {
  if (!config.moe) return true;
  if (tokens <= kMaxSmallGroupedRows) return true;  // small_gemm takes any K
  return tokens <= kMaxMmaRows && mma_gemm_supported(config.hidden_size) &&
         mma_gemm_supported(config.moe->expert_intermediate_size);
}

void CudaModel::forward(const GpuExec& exec, StepArena& arena, const StepInputs& inputs, const KvLayers& kv,
                        float* logits, const LoadCounters& load, OpProfile* profile, const ParallelComm& comm) const {
  CudaStepBackend backend(exec, arena, config_, precision_, profile);
  loop_->forward(backend, inputs, kv, logits, load, comm);
}

}  // namespace moeserve::cuda
