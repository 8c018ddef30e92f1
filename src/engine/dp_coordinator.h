// DpCoordinator: data parallelism behind the EngineClient seam. It owns one Engine per DP
// replica (each with its own scheduler and KV cache, all stepping one RankGroup through their
// replica runners, runtime/parallel_runner.h) and sends every new request to the least-loaded
// replica (fewest running + waiting requests, lowest index on ties), as vLLM's DP coordinator
// balances its engine cores. Lockstep for the MoE collectives is kept below, in the group: a
// replica without work joins each global step with an empty batch. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"

namespace moeserve {

class DpCoordinator final : public EngineClient {
 public:
  explicit DpCoordinator(std::vector<std::unique_ptr<Engine>> engines);
  ~DpCoordinator() override;

  void start();
  void stop();
  int num_replicas() const { return static_cast<int>(engines_.size()); }
  Engine& replica(int dp_rank) { return *engines_[dp_rank]; }

  const EngineInfo& info() const override { return engines_[0]->info(); }
  std::shared_ptr<const Tokenizer> tokenizer() const override { return engines_[0]->tokenizer(); }
  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void abort(const std::string& request_id) override;
  // Sums over the replicas (KV usage: their mean).
  EngineStats stats() const override;

 private:
  int least_loaded() const;

  std::vector<std::unique_ptr<Engine>> engines_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, int> replica_of_;  // in-flight request id → replica
};

}  // namespace moeserve
