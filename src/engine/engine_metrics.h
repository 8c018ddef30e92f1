// EngineMetrics: the hooks the engine loop reports through (called on the engine thread).
// The Prometheus implementation (vLLM's metric names plus moeserve:expert_tokens_total) lives
// with the server's registry; tests can record the calls.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace moeserve {

struct StepMetrics {
  int64_t steps = 0;  // 1 for a model step; 0 for the gauge update after a burst of aborts
  int num_running = 0;
  int num_waiting = 0;
  double kv_cache_usage = 0.0;
  int64_t prompt_tokens = 0;       // prompt tokens computed this step (not counting cache hits)
  int64_t generation_tokens = 0;   // tokens sampled this step
  int64_t preemptions = 0;         // this step
  int64_t prefix_queries = 0;      // tokens looked up in the prefix cache this step
  int64_t prefix_hits = 0;         // tokens found
  // Tokens routed to each expert this step: [layer × num_experts + expert]; empty if dense.
  const std::vector<int64_t>* expert_tokens = nullptr;
  int num_experts = 0;
};

struct RequestMetrics {
  FinishReason finish_reason = FinishReason::kStop;
  int num_prompt_tokens = 0;
  int num_output_tokens = 0;
  double queue_seconds = 0.0;
  double time_to_first_token_seconds = 0.0;  // < 0 when no token was produced
  double e2e_seconds = 0.0;
};

class EngineMetrics {
 public:
  virtual ~EngineMetrics() = default;
  virtual void on_step(const StepMetrics& step) = 0;
  virtual void on_inter_token_latency(double seconds) = 0;
  virtual void on_request_finished(const RequestMetrics& request) = 0;
};

// Hands every hook to each of `sinks` in order (the Prometheus export and the live page's
// counters see the same steps). The sinks must outlive it.
class EngineMetricsTee : public EngineMetrics {
 public:
  explicit EngineMetricsTee(std::vector<EngineMetrics*> sinks) : sinks_(std::move(sinks)) {}
  void on_step(const StepMetrics& step) override {
    for (EngineMetrics* sink : sinks_) sink->on_step(step);
  }
  void on_inter_token_latency(double seconds) override {
    for (EngineMetrics* sink : sinks_) sink->on_inter_token_latency(seconds);
  }
  void on_request_finished(const RequestMetrics& request) override {
    for (EngineMetrics* sink : sinks_) sink->on_request_finished(request);
  }

 private:
  std::vector<EngineMetrics*> sinks_;
};

}  // namespace moeserve
