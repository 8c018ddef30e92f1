// PrometheusEngineMetrics: the engine's hooks become vLLM-named series with vLLM's labels, the
// request_success series exist from the start, and moeserve:expert_tokens_total counts tokens
// per (layer, expert).
#include <gtest/gtest.h>

#include "server/prometheus_engine_metrics.h"

namespace moeserve {
namespace {

bool has_line(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

TEST(PrometheusEngineMetrics, ExportsVllmNames) {
  MetricsRegistry registry;
  PrometheusEngineMetrics metrics(registry, "tiny", 100);
  std::string text = registry.render();
  const std::string labels = "model_name=\"tiny\",engine=\"0\"";
  EXPECT_TRUE(has_line(text, "vllm:request_success_total{" + labels + ",finished_reason=\"stop\"} 0.0"));
  EXPECT_TRUE(has_line(text, "vllm:num_requests_running{" + labels + "} 0.0"));

  std::vector<int64_t> experts = {3, 0, 1, 4};  // 2 layers x 2 experts
  StepMetrics step{.steps = 1, .num_running = 2, .num_waiting = 1, .kv_cache_usage = 0.5, .prompt_tokens = 10,
                   .generation_tokens = 2, .preemptions = 1, .prefix_queries = 16, .prefix_hits = 8,
                   .expert_tokens = &experts, .num_experts = 2};
  metrics.on_step(step);
  metrics.on_step(step);
  // The gauge update after a burst of aborts is no step.
  metrics.on_step(StepMetrics{.num_running = 2, .num_waiting = 1, .kv_cache_usage = 0.5});
  metrics.on_inter_token_latency(0.02);
  metrics.on_request_finished(RequestMetrics{.finish_reason = FinishReason::kLength, .num_prompt_tokens = 7,
                                             .num_output_tokens = 3, .queue_seconds = 0.1,
                                             .time_to_first_token_seconds = 0.003, .e2e_seconds = 0.4});
  text = registry.render();
  EXPECT_TRUE(has_line(text, "vllm:num_requests_running{" + labels + "} 2.0"));
  EXPECT_TRUE(has_line(text, "vllm:num_requests_waiting{" + labels + "} 1.0"));
  EXPECT_TRUE(has_line(text, "vllm:kv_cache_usage_perc{" + labels + "} 0.5"));
  EXPECT_TRUE(has_line(text, "vllm:prompt_tokens_total{" + labels + "} 20.0"));
  EXPECT_TRUE(has_line(text, "vllm:generation_tokens_total{" + labels + "} 4.0"));
  EXPECT_TRUE(has_line(text, "vllm:num_preemptions_total{" + labels + "} 2.0"));
  EXPECT_TRUE(has_line(text, "vllm:prefix_cache_queries_total{" + labels + "} 32.0"));
  EXPECT_TRUE(has_line(text, "vllm:prefix_cache_hits_total{" + labels + "} 16.0"));
  EXPECT_TRUE(has_line(text, "moeserve:engine_steps_total{" + labels + "} 2.0"));
  EXPECT_TRUE(has_line(text, "vllm:request_success_total{" + labels + ",finished_reason=\"length\"} 1.0"));
  EXPECT_TRUE(has_line(text, "vllm:time_to_first_token_seconds_bucket{" + labels + ",le=\"0.001\"} 0.0"));
  EXPECT_TRUE(has_line(text, "vllm:time_to_first_token_seconds_bucket{" + labels + ",le=\"0.005\"} 1.0"));
  EXPECT_TRUE(has_line(text, "vllm:inter_token_latency_seconds_count{" + labels + "} 1.0"));
  EXPECT_TRUE(has_line(text, "vllm:e2e_request_latency_seconds_sum{" + labels + "} 0.4"));
  EXPECT_TRUE(has_line(text, "vllm:request_prompt_tokens_bucket{" + labels + ",le=\"10.0\"} 1.0"));
  EXPECT_TRUE(has_line(text, "moeserve:expert_tokens_total{" + labels + ",layer=\"0\",expert=\"0\"} 6.0"));
  EXPECT_TRUE(has_line(text, "moeserve:expert_tokens_total{" + labels + ",layer=\"0\",expert=\"1\"} 0.0"));
  EXPECT_TRUE(has_line(text, "moeserve:expert_tokens_total{" + labels + ",layer=\"1\",expert=\"1\"} 8.0"));
  EXPECT_TRUE(has_line(text, "# TYPE moeserve:expert_tokens counter"));
}

}  // namespace
}  // namespace moeserve
