// The runner behind `logits` and `generate` (one sequence): the model on one thread pool, the
// CUDA runner with --device cuda, or, when the parallel flags ask for more than one rank, DP
// replica 0 of a RankGroup (the other replicas take part in every step with empty batches).
// Logs the layout it built.
#pragma once

#include <memory>

#include "cli/engine_flags.h"
#include "runtime/parallel_runner.h"
#include "runtime/sequence_runner.h"

namespace moeserve::cli {

class SequenceBackend {
 public:
  // max_tokens: the sequence's capacity (prompt + generated).
  static Result<std::unique_ptr<SequenceBackend>> create(const EngineFlags& flags, int max_tokens);

  const ModelConfig& config() const { return config_; }
  SequenceRunner& runner() { return *runner_; }

 private:
  ModelConfig config_;
  LoadedModel loaded_;
  std::unique_ptr<Runner> device_runner_;  // --device cuda
  std::unique_ptr<ThreadPool> pool_;
  ExecContext exec_;
  ParallelRunners parallel_;
  std::unique_ptr<SequenceRunner> runner_;
};

}  // namespace moeserve::cli
