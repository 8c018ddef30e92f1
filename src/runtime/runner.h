// Runner: the seam between the engine and a model replica. A Runner executes scheduler steps over
// the paged KV memory it owns: runtime/model_runner.h's ModelRunner on any backend, or a parallel
// layout's replica (runtime/parallel_runner.h). The engine sizes its KvCacheManager from
// num_kv_blocks()/block_size(), so block ids it hands out always exist in the runner's memory.
#pragma once

#include <span>

#include "model/config.h"
#include "runtime/runner_seq.h"
#include "runtime/logprobs.h"
#include "tensor/tensor.h"

namespace moeserve {

class Runner {
 public:
  virtual ~Runner() = default;

  virtual const ModelConfig& config() const = 0;
  // KV blocks this runner allocated, of block_size() tokens each.
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  // Bytes of KV memory actually allocated (checked against the memory model's plan).
  virtual size_t kv_memory_bytes() const = 0;
  // logits [rows, vocab] float32 on the host: per sequence in order, num_new rows when
  // all_logits, else one row when it samples, else none.
  virtual Tensor execute(std::span<const RunnerSeq> seqs) = 0;
  // A runner that picks tokens itself (every one: the CPU on the host through TokenPicker, CUDA
  // on the device) returns true and,
  // after each execute(), the token of every logits row in row order: for a sequence with a
  // TokenChoice, the token it picks (apply_edits + sample_with_uniform; that row is then not
  // copied back, left unwritten), for the others the row's argmax.
  virtual bool picks_tokens() const { return false; }
  virtual std::span<const int32_t> picked_tokens() const { return {}; }
  // The most top logprobs such a runner computes with a token (choices without edits); −1: none.
  // picked_logprobs() then holds, per logits row, those of rows whose choice asked for them.
  virtual int max_picked_logprobs() const { return -1; }
  virtual std::span<const TokenLogprob> picked_logprobs() const { return {}; }
  // Per-layer, per-expert routed token counts since the last reset (empty for dense models).
  virtual const ExpertLoad& expert_load() const = 0;
  virtual void reset_expert_load() = 0;
};

}  // namespace moeserve
