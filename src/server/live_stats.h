// LiveStats: the engine's counters as the live page (`/`, server/live_feed.h) reads them — the
// same hooks PrometheusEngineMetrics exports, kept as plain cumulative totals that one snapshot
// can read consistently, plus the recent requests' latencies for percentiles. Hooks run on the
// engine thread(s) (one per DP replica); snapshots on the io thread. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/engine_metrics.h"

namespace moeserve {

// Cumulative since the server started; every field is what the matching /metrics counter holds.
struct LiveTotals {
  int num_layers = 0;  // 0 until the first step with routed tokens (or a dense model)
  int num_experts = 0;
  std::vector<int64_t> expert_tokens;  // [num_layers × num_experts], layer-major: moeserve:expert_tokens_total
  int64_t prompt_tokens = 0;           // vllm:prompt_tokens_total
  int64_t generation_tokens = 0;       // vllm:generation_tokens_total
  int64_t preemptions = 0;             // vllm:num_preemptions_total
  int64_t prefix_queries = 0;          // vllm:prefix_cache_queries_total
  int64_t prefix_hits = 0;             // vllm:prefix_cache_hits_total
  int64_t requests_finished = 0;       // vllm:request_success_total, all reasons
};

// Percentiles (seconds) of the requests finished in a recent window; -1 where there were none.
struct LatencyPercentiles {
  double p50 = -1, p90 = -1, p99 = -1;
};
struct LatencySummary {
  int num_requests = 0;     // finished in the window (with or without a token)
  LatencyPercentiles ttft;  // time to first token
  LatencyPercentiles tpot;  // time per output token after the first, per request
};

class LiveStats : public EngineMetrics {
 public:
  using Clock = std::chrono::steady_clock;
  // Latency samples kept at most (the oldest go first).
  static constexpr size_t kMaxSamples = 4096;

  void on_step(const StepMetrics& step) override;
  void on_inter_token_latency(double seconds) override {}
  void on_request_finished(const RequestMetrics& request) override;

  LiveTotals totals() const;
  // Over the requests that finished in the last `window_s` seconds before `now`.
  LatencySummary latency(double window_s, Clock::time_point now = Clock::now()) const;

  // An API-server process's copy of the engine process's counters (src/apiserver/): from the
  // first call on, totals() returns `totals` and latency() `latency` (the engine's summary over
  // LiveFeed::kLatencyWindowS, whatever window is asked), as of the engine's last report.
  void mirror(LiveTotals totals, LatencySummary latency);

 private:
  struct Sample {
    Clock::time_point at;
    double ttft_s;  // < 0: no token
    double tpot_s;  // < 0: fewer than two tokens
  };
  mutable std::mutex mutex_;
  LiveTotals totals_;
  std::deque<Sample> samples_;
  std::optional<LatencySummary> mirrored_latency_;
};

// The q-quantile (0..1) of `values` by nearest rank; -1 when empty. Reorders `values`.
double quantile(std::vector<double>& values, double q);

}  // namespace moeserve
