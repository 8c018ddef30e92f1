// Metrics registry: exact Prometheus text exposition (0.0.4) for counters, gauges and
// histograms with labels, value formatting as prometheus_client prints it, label escaping, and
// concurrent updates from several threads.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "metrics/metrics_registry.h"

namespace moeserve {
namespace {

TEST(MetricsRegistry, RendersCountersWithTotalSuffixAndLabels) {
  MetricsRegistry registry;
  const Labels model = {{"model_name", "tiny"}, {"engine", "0"}};
  registry.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", model).inc(12);
  Labels stop = model;
  stop.emplace_back("finished_reason", "stop");
  Labels length = model;
  length.emplace_back("finished_reason", "length");
  // A name given with `_total` names the same family.
  registry.counter("vllm:request_success_total", "Count of successfully processed requests.", stop).inc();
  registry.counter("vllm:request_success", "ignored", length).inc(2);
  registry.counter("vllm:request_success", "ignored", stop).inc();
  EXPECT_EQ(registry.render(),
            "# HELP vllm:prompt_tokens Number of prefill tokens processed.\n"
            "# TYPE vllm:prompt_tokens counter\n"
            "vllm:prompt_tokens_total{model_name=\"tiny\",engine=\"0\"} 12.0\n"
            "# HELP vllm:request_success Count of successfully processed requests.\n"
            "# TYPE vllm:request_success counter\n"
            "vllm:request_success_total{model_name=\"tiny\",engine=\"0\",finished_reason=\"stop\"} 2.0\n"
            "vllm:request_success_total{model_name=\"tiny\",engine=\"0\",finished_reason=\"length\"} 2.0\n");
}

TEST(MetricsRegistry, RendersGaugesAndIgnoresNegativeCounterIncrements) {
  MetricsRegistry registry;
  Gauge& usage = registry.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
  usage.set(0.25);
  Gauge& running = registry.gauge("vllm:num_requests_running", "Running requests.");
  running.inc(3);
  running.dec();
  Counter& counter = registry.counter("c", "A counter.");
  counter.inc(-5);
  EXPECT_EQ(counter.value(), 0.0);
  EXPECT_EQ(registry.render(),
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            "vllm:kv_cache_usage_perc 0.25\n"
            "# HELP vllm:num_requests_running Running requests.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            "vllm:num_requests_running 2.0\n"
            "# HELP c A counter.\n"
            "# TYPE c counter\n"
            "c_total 0.0\n");
}

TEST(MetricsRegistry, RendersCumulativeHistogramBuckets) {
  MetricsRegistry registry;
  Histogram& ttft = registry.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token.",
                                       {0.001, 0.5, 1.0}, {{"model_name", "m"}});
  ttft.observe(0.0005);
  ttft.observe(0.5);  // le is inclusive
  ttft.observe(0.75);
  ttft.observe(3.0);
  EXPECT_EQ(registry.render(),
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token.\n"
            "# TYPE vllm:time_to_first_token_seconds histogram\n"
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.001\"} 1.0\n"
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.5\"} 2.0\n"
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"1.0\"} 3.0\n"
            "vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 4.0\n"
            "vllm:time_to_first_token_seconds_count{model_name=\"m\"} 4.0\n"
            "vllm:time_to_first_token_seconds_sum{model_name=\"m\"} 4.2505\n");
}

TEST(MetricsRegistry, EscapesHelpAndLabelValues) {
  MetricsRegistry registry;
  registry.gauge("g", "line one\nback\\slash", {{"path", "a\"b\\c\nd"}}).set(1);
  EXPECT_EQ(registry.render(),
            "# HELP g line one\\nback\\\\slash\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\"b\\\\c\\nd\"} 1.0\n");
}

TEST(MetricsRegistry, FormatsValuesLikePythonRepr) {
  EXPECT_EQ(format_metric_value(0.0), "0.0");
  EXPECT_EQ(format_metric_value(1.0), "1.0");
  EXPECT_EQ(format_metric_value(-3.0), "-3.0");
  EXPECT_EQ(format_metric_value(0.1), "0.1");
  EXPECT_EQ(format_metric_value(0.0001), "0.0001");
  EXPECT_EQ(format_metric_value(1e-05), "1e-05");
  EXPECT_EQ(format_metric_value(123456789.0), "123456789.0");
  EXPECT_EQ(format_metric_value(1e16), "1e+16");
  EXPECT_EQ(format_metric_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_metric_value(-1.0 / 0.0), "-Inf");
}

TEST(MetricsRegistry, BucketsOneTwoFive) {
  EXPECT_EQ(buckets_1_2_5(100), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(buckets_1_2_5(4096), (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
}

TEST(MetricsRegistry, CollectHooksRunBeforeRender) {
  MetricsRegistry registry;
  Gauge& waiting = registry.gauge("w", "Waiting.");
  int polled = 7;
  registry.add_collect_hook([&] { waiting.set(polled); });
  EXPECT_NE(registry.render().find("w 7.0\n"), std::string::npos);
  polled = 9;
  EXPECT_NE(registry.render().find("w 9.0\n"), std::string::npos);
}

TEST(MetricsRegistry, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Series lookups race with updates and with creation of new series.
        registry.counter("tokens", "Tokens.", {{"thread", std::to_string(t % 2)}}).inc();
        registry.histogram("lat", "Latency.", {1.0, 2.0}).observe(1.5);
        registry.gauge("g", "G.").inc();
      }
    });
  }
  std::thread renderer([&registry] {
    for (int i = 0; i < 50; ++i) (void)registry.render();
  });
  for (auto& thread : threads) thread.join();
  renderer.join();
  EXPECT_EQ(registry.counter("tokens", "", {{"thread", "0"}}).value(), 2.0 * kPerThread);
  EXPECT_EQ(registry.counter("tokens", "", {{"thread", "1"}}).value(), 2.0 * kPerThread);
  Histogram& lat = registry.histogram("lat", "", {1.0, 2.0});
  EXPECT_EQ(lat.count(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(lat.cumulative_counts()[0], 0u);
  EXPECT_EQ(lat.sum(), 1.5 * kThreads * kPerThread);
  EXPECT_EQ(registry.gauge("g", "").value(), double{kThreads * kPerThread});
}

}  // namespace
}  // namespace moeserve
