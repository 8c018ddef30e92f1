// PrometheusEngineMetrics: engine hooks → vLLM-named Prometheus series.
#include "server/prometheus_engine_metrics.h"

#include <algorithm>

#include "server/openai_responses.h"

namespace moeserve {

const std::vector<double> PrometheusEngineMetrics::kTimeToFirstTokenBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0};
const std::vector<double> PrometheusEngineMetrics::kInterTokenLatencyBuckets = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> PrometheusEngineMetrics::kRequestLatencyBuckets = {
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0};

PrometheusEngineMetrics::PrometheusEngineMetrics(MetricsRegistry& registry, const std::string& model_name,
                                                 int max_model_len)
    : registry_(registry),
      labels_{{"model_name", model_name}, {"engine", "0"}},
      running_(registry.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", labels_)),
      waiting_(registry.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels_)),
      kv_usage_(registry.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels_)),
      prompt_tokens_(registry.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels_)),
      generation_tokens_(registry.counter("vllm:generation_tokens", "Number of generation tokens processed.", labels_)),
      preemptions_(
          registry.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", labels_)),
      prefix_queries_(registry.counter("vllm:prefix_cache_queries",
                                       "Prefix cache queries, in terms of number of queried tokens.", labels_)),
      prefix_hits_(registry.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
                                    labels_)),
      steps_(registry.counter("moeserve:engine_steps", "Model steps the engine loop has run.", labels_)),
      ttft_(registry.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                               kTimeToFirstTokenBuckets, labels_)),
      inter_token_(registry.histogram("vllm:inter_token_latency_seconds",
                                      "Histogram of inter-token latency in seconds.", kInterTokenLatencyBuckets,
                                      labels_)),
      e2e_(registry.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                              kRequestLatencyBuckets, labels_)),
      queue_time_(registry.histogram("vllm:request_queue_time_seconds",
                                     "Histogram of time spent in WAITING phase for request.", kRequestLatencyBuckets,
                                     labels_)),
      request_prompt_tokens_(registry.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                                                buckets_1_2_5(std::max(1, max_model_len)), labels_)),
      request_generation_tokens_(registry.histogram("vllm:request_generation_tokens",
                                                    "Number of generation tokens processed.",
                                                    buckets_1_2_5(std::max(1, max_model_len)), labels_)) {
  // vLLM exports every finished_reason series from the start, at zero.
  for (FinishReason reason : {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort}) {
    registry.counter("vllm:request_success", "Count of successfully processed requests.",
                     with("finished_reason", openai_finish_reason(reason)));
  }
}

Labels PrometheusEngineMetrics::with(const std::string& name, const std::string& value) const {
  Labels labels = labels_;
  labels.emplace_back(name, value);
  return labels;
}

void PrometheusEngineMetrics::ensure_expert_counters(size_t count, int num_experts) {
  if (expert_tokens_.size() == count || num_experts <= 0) return;
  expert_tokens_.clear();
  for (size_t idx = 0; idx < count; ++idx) {
    Labels labels = labels_;
    labels.emplace_back("layer", std::to_string(idx / num_experts));
    labels.emplace_back("expert", std::to_string(idx % num_experts));
    expert_tokens_.push_back(
        &registry_.counter("moeserve:expert_tokens", "Tokens routed to each expert of each MoE layer.", labels));
  }
}

void PrometheusEngineMetrics::on_step(const StepMetrics& step) {
  running_.set(step.num_running);
  waiting_.set(step.num_waiting);
  kv_usage_.set(step.kv_cache_usage);
  prompt_tokens_.inc(static_cast<double>(step.prompt_tokens));
  generation_tokens_.inc(static_cast<double>(step.generation_tokens));
  preemptions_.inc(static_cast<double>(step.preemptions));
  prefix_queries_.inc(static_cast<double>(step.prefix_queries));
  prefix_hits_.inc(static_cast<double>(step.prefix_hits));
  steps_.inc(static_cast<double>(step.steps));
  if (step.expert_tokens != nullptr && step.num_experts > 0) {
    ensure_expert_counters(step.expert_tokens->size(), step.num_experts);
    for (size_t idx = 0; idx < expert_tokens_.size(); ++idx) {
      if ((*step.expert_tokens)[idx] != 0) expert_tokens_[idx]->inc(static_cast<double>((*step.expert_tokens)[idx]));
    }
  }
}

void PrometheusEngineMetrics::on_inter_token_latency(double seconds) { inter_token_.observe(seconds); }

void PrometheusEngineMetrics::on_request_finished(const RequestMetrics& request) {
  registry_.counter("vllm:request_success", "Count of successfully processed requests.",
                    with("finished_reason", openai_finish_reason(request.finish_reason)))
      .inc();
  if (request.time_to_first_token_seconds >= 0) ttft_.observe(request.time_to_first_token_seconds);
  e2e_.observe(request.e2e_seconds);
  queue_time_.observe(request.queue_seconds);
  request_prompt_tokens_.observe(request.num_prompt_tokens);
  request_generation_tokens_.observe(request.num_output_tokens);
}

}  // namespace moeserve
