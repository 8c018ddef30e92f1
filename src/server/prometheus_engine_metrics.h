// PrometheusEngineMetrics: the engine's metric hooks (engine/engine_metrics.h) exported under
// vLLM's metric names and labels (model_name = the first served name, engine = "0"), so vLLM
// dashboards read moeserve unchanged, plus moeserve:expert_tokens_total{layer,expert} — the
// tokens routed to each expert — which no other server exports. Hooks run on the engine thread;
// the registry renders on the io thread.
#pragma once

#include <string>
#include <vector>

#include "engine/engine_metrics.h"
#include "metrics/metrics_registry.h"

namespace moeserve {

class PrometheusEngineMetrics : public EngineMetrics {
 public:
  PrometheusEngineMetrics(MetricsRegistry& registry, const std::string& model_name, int max_model_len);

  void on_step(const StepMetrics& step) override;
  void on_inter_token_latency(double seconds) override;
  void on_request_finished(const RequestMetrics& request) override;

  // vLLM's bucket boundaries.
  static const std::vector<double> kTimeToFirstTokenBuckets;
  static const std::vector<double> kInterTokenLatencyBuckets;
  static const std::vector<double> kRequestLatencyBuckets;

 private:
  Labels with(const std::string& name, const std::string& value) const;
  void ensure_expert_counters(size_t count, int num_experts);

  MetricsRegistry& registry_;
  Labels labels_;
  Gauge& running_;
  Gauge& waiting_;
  Gauge& kv_usage_;
  Counter& prompt_tokens_;
  Counter& generation_tokens_;
  Counter& preemptions_;
  Counter& prefix_queries_;
  Counter& prefix_hits_;
  Counter& steps_;
  Histogram& ttft_;
  Histogram& inter_token_;
  Histogram& e2e_;
  Histogram& queue_time_;
  Histogram& request_prompt_tokens_;
  Histogram& request_generation_tokens_;
  // Engine thread only: the expert counters, [layer * num_experts + expert], created on first
  // use so a step costs no registry lookups.
  std::vector<Counter*> expert_tokens_;
};

}  // namespace moeserve
