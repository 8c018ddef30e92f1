// A small thread-safe Prometheus metrics registry with the text exposition format 0.0.4.
// We write our own because prometheus-cpp is not packaged in Debian 12 (bookworm), and the
// project takes its dependencies from Debian only. It covers what a serving engine exports:
// counters, gauges and histograms, each a family of series keyed by a label set, rendered
// the way Python's prometheus_client renders them (vLLM's exporter), so existing dashboards
// and scrapers read our /metrics unchanged: counters gain `_total`, histograms expose
// cumulative `_bucket{le=...}` series ending in `le="+Inf"`, `_sum` and `_count`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace moeserve {

// Label pairs in the order they are rendered. Two series of one family are the same series
// exactly when their label sets are equal (same names, values and order).
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  // `amount` must be >= 0 (counters only go up); a negative amount is ignored.
  void inc(double amount = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1.0);
  void dec(double amount = 1.0) { inc(-amount); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Invariant: bounds_ is strictly increasing and finite; counts_ has bounds_.size() + 1 slots,
// the last one for observations above every bound (+Inf). Counts are per bucket here and made
// cumulative when rendered.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // A consistent-enough snapshot for exposition: cumulative counts per bound, then +Inf.
  std::vector<uint64_t> cumulative_counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Each returns the series of family `name` with `labels`, creating the family and series on
  // first use; references stay valid for the registry's lifetime. A counter's family name is
  // stored without a trailing `_total` (prometheus_client's rule) and rendered with it. Asking
  // for an existing name with another type, or a histogram with other buckets, is a programmer
  // bug (checked). `help` of the first registration wins.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                       const Labels& labels = {});

  // Runs before every render (e.g. to copy a queue length into a gauge). Not re-entrant: a
  // hook must not call render() or add hooks.
  void add_collect_hook(std::function<void()> hook);

  // Text exposition format 0.0.4: families in registration order, series in creation order.
  std::string render() const;

  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    std::string name;
    std::string help;
    MetricType type = MetricType::kCounter;
    std::vector<double> buckets;
    std::vector<std::unique_ptr<Series>> series;
    std::map<Labels, Series*> by_labels;
  };

  Series& series(const std::string& name, const std::string& help, MetricType type, const Labels& labels,
                 const std::vector<double>* buckets);
  static void render_family(const Family& family, std::string& out);

  mutable std::mutex mutex_;  // guards families_, by_name_ and hooks_ (not the values)
  std::vector<std::unique_ptr<Family>> families_;
  std::map<std::string, Family*> by_name_;
  std::vector<std::function<void()>> hooks_;
};

// Formats a sample value as prometheus_client does (Python's repr of a float): "1.0", "0.25",
// "1e-05", "+Inf", "-Inf", "NaN".
std::string format_metric_value(double value);

// Buckets 1, 2, 5, 10, 20, 50, ... up to and including the largest not above `max_value`
// (vLLM's build_1_2_5_buckets).
std::vector<double> buckets_1_2_5(double max_value);

}  // namespace moeserve
