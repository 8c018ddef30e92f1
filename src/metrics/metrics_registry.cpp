// MetricsRegistry: family/series bookkeeping under one mutex, lock-free value updates, and the
// Prometheus text exposition format 0.0.4 renderer.
#include "metrics/metrics_registry.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "base/check.h"

namespace moeserve {
namespace {

void atomic_add(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

const char* type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escapes backslash and newline; label values also escape the double quote.
std::string escape(const std::string& text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` with an optional extra pair appended (a histogram's `le`); "" when empty.
std::string render_labels(const Labels& labels, const std::string& extra_name = "",
                          const std::string& extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  auto append = [&](const std::string& name, const std::string& value) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    out += escape(value, true);
    out += '"';
  };
  for (const auto& [name, value] : labels) append(name, value);
  if (!extra_name.empty()) append(extra_name, extra_value);
  out += '}';
  return out;
}

void append_sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name;
  out += labels;
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

void Counter::inc(double amount) {
  if (!(amount >= 0.0)) return;
  atomic_add(value_, amount);
}

void Gauge::inc(double amount) { atomic_add(value_, amount); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i + 1 < bounds_.size(); ++i) MS_CHECK(bounds_[i] < bounds_[i + 1]);
  for (double bound : bounds_) MS_CHECK(std::isfinite(bound));
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) {
  // Bucket `le` counts values <= le: the first bound not below the value.
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, value);
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

uint64_t Histogram::count() const { return cumulative_counts().back(); }

MetricsRegistry::Series& MetricsRegistry::series(const std::string& name, const std::string& help, MetricType type,
                                                 const Labels& labels, const std::vector<double>* buckets) {
  std::lock_guard lock(mutex_);
  Family* family = nullptr;
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    family = it->second;
    MS_CHECK_MSG(family->type == type, name.c_str());
    MS_CHECK_MSG(buckets == nullptr || *buckets == family->buckets, name.c_str());
  } else {
    auto created = std::make_unique<Family>();
    created->name = name;
    created->help = help;
    created->type = type;
    if (buckets != nullptr) created->buckets = *buckets;
    family = created.get();
    by_name_[name] = family;
    families_.push_back(std::move(created));
  }
  if (auto it = family->by_labels.find(labels); it != family->by_labels.end()) return *it->second;
  auto created = std::make_unique<Series>();
  created->labels = labels;
  switch (type) {
    case MetricType::kCounter:
      created->counter = std::make_unique<Counter>();
      break;
    case MetricType::kGauge:
      created->gauge = std::make_unique<Gauge>();
      break;
    case MetricType::kHistogram:
      created->histogram = std::make_unique<Histogram>(family->buckets);
      break;
  }
  Series* result = created.get();
  family->by_labels[labels] = result;
  family->series.push_back(std::move(created));
  return *result;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::string base = name;
  if (base.size() > 6 && base.ends_with("_total")) base.resize(base.size() - 6);
  return *series(base, help, MetricType::kCounter, labels, nullptr).counter;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return *series(name, help, MetricType::kGauge, labels, nullptr).gauge;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      const std::vector<double>& buckets, const Labels& labels) {
  return *series(name, help, MetricType::kHistogram, labels, &buckets).histogram;
}

void MetricsRegistry::add_collect_hook(std::function<void()> hook) {
  std::lock_guard lock(mutex_);
  hooks_.push_back(std::move(hook));
}

void MetricsRegistry::render_family(const Family& family, std::string& out) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family.name, escape(family.help, false), family.name,
                     type_name(family.type));
  for (const auto& series : family.series) {
    const std::string labels = render_labels(series->labels);
    switch (family.type) {
      case MetricType::kCounter:
        append_sample(out, family.name + "_total", labels, series->counter->value());
        break;
      case MetricType::kGauge:
        append_sample(out, family.name, labels, series->gauge->value());
        break;
      case MetricType::kHistogram: {
        const Histogram& histogram = *series->histogram;
        const std::vector<uint64_t> counts = histogram.cumulative_counts();
        const std::string bucket_name = family.name + "_bucket";
        for (size_t i = 0; i < histogram.bounds().size(); ++i) {
          append_sample(out, bucket_name, render_labels(series->labels, "le", format_metric_value(histogram.bounds()[i])),
                        static_cast<double>(counts[i]));
        }
        append_sample(out, bucket_name, render_labels(series->labels, "le", "+Inf"),
                      static_cast<double>(counts.back()));
        // _count is taken from the same snapshot as the buckets so the +Inf bucket equals it.
        append_sample(out, family.name + "_count", labels, static_cast<double>(counts.back()));
        append_sample(out, family.name + "_sum", labels, histogram.sum());
        break;
      }
    }
  }
}

std::string MetricsRegistry::render() const {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(mutex_);
    hooks = hooks_;
  }
  for (const auto& hook : hooks) hook();
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& family : families_) render_family(*family, out);
  return out;
}

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // fmt's shortest round-trip form switches to exponents where Python's repr does; Python
  // then marks integral values with ".0".
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::vector<double> buckets_1_2_5(double max_value) {
  std::vector<double> buckets;
  for (double exponent = 1.0;; exponent *= 10.0) {
    for (double mantissa : {1.0, 2.0, 5.0}) {
      const double value = mantissa * exponent;
      if (value > max_value) return buckets;
      buckets.push_back(value);
    }
  }
}

}  // namespace moeserve
