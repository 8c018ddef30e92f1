// LiveStats: cumulative engine counters and recent latencies for the live page.
#include "server/live_stats.h"

#include <algorithm>
#include <cmath>

namespace moeserve {

void LiveStats::on_step(const StepMetrics& step) {
  std::lock_guard lock(mutex_);
  totals_.prompt_tokens += step.prompt_tokens;
  totals_.generation_tokens += step.generation_tokens;
  totals_.preemptions += step.preemptions;
  totals_.prefix_queries += step.prefix_queries;
  totals_.prefix_hits += step.prefix_hits;
  if (step.expert_tokens == nullptr || step.num_experts <= 0) return;
  const std::vector<int64_t>& counts = *step.expert_tokens;  // [layers × experts]
  if (totals_.expert_tokens.size() != counts.size() || totals_.num_experts != step.num_experts) {
    totals_.num_experts = step.num_experts;
    totals_.num_layers = static_cast<int>(counts.size()) / step.num_experts;
    totals_.expert_tokens.assign(counts.size(), 0);
  }
  for (size_t idx = 0; idx < counts.size(); ++idx) totals_.expert_tokens[idx] += counts[idx];
}

void LiveStats::on_request_finished(const RequestMetrics& request) {
  Sample sample{Clock::now(), request.time_to_first_token_seconds, -1.0};
  if (request.time_to_first_token_seconds >= 0 && request.num_output_tokens >= 2) {
    sample.tpot_s = (request.e2e_seconds - request.time_to_first_token_seconds) / (request.num_output_tokens - 1);
  }
  std::lock_guard lock(mutex_);
  ++totals_.requests_finished;
  samples_.push_back(sample);
  if (samples_.size() > kMaxSamples) samples_.pop_front();
}

LiveTotals LiveStats::totals() const {
  std::lock_guard lock(mutex_);
  return totals_;
}

double quantile(std::vector<double>& values, double q) {
  if (values.empty()) return -1;
  // Nearest rank: the smallest value with at least q of the values at or below it.
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(values.size()))) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

void LiveStats::mirror(LiveTotals totals, LatencySummary latency) {
  std::lock_guard lock(mutex_);
  totals_ = std::move(totals);
  mirrored_latency_ = latency;
}

LatencySummary LiveStats::latency(double window_s, Clock::time_point now) const {
  std::vector<double> ttft, tpot;
  int count = 0;
  {
    std::lock_guard lock(mutex_);
    if (mirrored_latency_) return *mirrored_latency_;
    const auto since = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(window_s));
    for (auto it = samples_.rbegin(); it != samples_.rend() && it->at >= since; ++it) {
      ++count;
      if (it->ttft_s >= 0) ttft.push_back(it->ttft_s);
      if (it->tpot_s >= 0) tpot.push_back(it->tpot_s);
    }
  }
  LatencySummary summary;
  summary.num_requests = count;
  for (auto [values, out] : {std::pair{&ttft, &summary.ttft}, std::pair{&tpot, &summary.tpot}}) {
    out->p50 = quantile(*values, 0.50);
    out->p90 = quantile(*values, 0.90);
    out->p99 = quantile(*values, 0.99);
  }
  return summary;
}

}  // namespace moeserve
