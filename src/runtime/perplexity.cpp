#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moeserve {

double token_nll(std::span<const float> logits, int32_t target) {
  double max = -std::numeric_limits<double>::infinity();
  for (float value : logits) max = std::max(max, static_cast<double>(value));
  double sum = 0.0;
  for (float value : logits) sum += std::exp(static_cast<double>(value) - max);
  return std::log(sum) + max - static_cast<double>(logits[target]);
}

void NllStats::add(double nll) {
  ++count;
  const double delta = nll - mean;
  mean += delta / static_cast<double>(count);
  m2 += delta * (nll - mean);
}

double NllStats::perplexity() const { return std::exp(mean); }

double NllStats::mean_stderr() const {
  if (count < 2) return std::numeric_limits<double>::quiet_NaN();
  const double n = static_cast<double>(count);
  return std::sqrt(m2 / n / (n - 1.0));
}

double NllStats::perplexity_stderr() const { return perplexity() * mean_stderr(); }

Result<std::vector<PerplexityWindow>> plan_perplexity_windows(int64_t num_tokens, int ctx_size, int stride,
                                                              bool with_bos) {
  if (ctx_size < 2) return make_error("the context size must be at least 2 tokens, got {}", ctx_size);
  if (stride < 1 || stride > ctx_size - 1) {
    return make_error("the stride must be between 1 and the context size - 1 ({}), got {}", ctx_size - 1, stride);
  }
  if (num_tokens < 2) return make_error("the text has {} token(s); perplexity needs at least 2", num_tokens);
  const int64_t text_per_window = ctx_size - (with_bos ? 1 : 0);
  std::vector<PerplexityWindow> windows;
  PerplexityWindow window{.begin = 0, .end = std::min(text_per_window, num_tokens), .score_begin = with_bos ? 0 : 1};
  windows.push_back(window);
  while (window.end < num_tokens) {
    const int64_t end = std::min(window.end + stride, num_tokens);
    window = PerplexityWindow{.begin = end - text_per_window, .end = end, .score_begin = window.end};
    windows.push_back(window);
  }
  return windows;
}

WindowRunner sequence_window_runner(SequenceRunner& runner) {
  return [&runner](std::span<const int32_t> context, std::span<const int32_t> rows) -> Result<Tensor> {
    runner.reset();
    if (!context.empty()) {
      auto skipped = runner.append(context, /*all_logits=*/false);  // float32 [1, vocab], unused
      if (!skipped.ok()) return skipped.error();
    }
    return runner.append(rows, /*all_logits=*/true);  // float32 [rows.size(), vocab]
  };
}

Result<PerplexityResult> compute_perplexity(std::span<const int32_t> ids, const PerplexityOptions& options,
                                            const WindowRunner& run,
                                            const std::function<void(const WindowReport&)>& on_window) {
  const bool with_bos = options.bos_id.has_value();
  auto windows = plan_perplexity_windows(static_cast<int64_t>(ids.size()), options.ctx_size, options.stride, with_bos);
  if (!windows.ok()) return windows.error();
  PerplexityResult result;
  result.windows_total = static_cast<int64_t>(windows->size());
  const int64_t total = options.max_windows > 0 ? std::min(options.max_windows, result.windows_total)
                                                : result.windows_total;
  std::vector<int32_t> sequence;  // [BOS] + ids[begin, end)
  for (int64_t index = 0; index < total; ++index) {
    const PerplexityWindow& window = (*windows)[index];
    const std::string where = fmt::format("window {}/{} (tokens {}-{})", index + 1, total, window.begin, window.end);
    sequence.clear();
    if (with_bos) sequence.push_back(*options.bos_id);
    sequence.insert(sequence.end(), ids.begin() + window.begin, ids.begin() + window.end);
    // The token before ids[score_begin] (maybe the BOS) gives the first scored row; the window's
    // last token predicts nothing inside it, so it is not run.
    const int64_t first_row = window.score_begin - window.begin + (with_bos ? 1 : 0) - 1;
    const int64_t num_rows = window.end - window.score_begin;
    const std::span<const int32_t> all(sequence);
    auto logits = run(all.first(first_row), all.subspan(first_row, num_rows));
    if (!logits.ok()) return logits.error().with_context(where);
    const TensorView& view = logits->view();  // float32 [num_rows, vocab]
    if (view.dtype != DType::kF32 || view.shape.rank() != 2 || view.dim(0) != num_rows || view.dim(1) < 1) {
      return make_error("{}: the runner returned logits of shape {}, expected float32 [{}, vocab]", where,
                        view.shape.to_string(), num_rows);
    }
    const int64_t vocab = view.dim(1);
    WindowReport report{.index = index, .total = total, .window = window};
    for (int64_t row = 0; row < num_rows; ++row) {
      const int32_t target = ids[window.score_begin + row];
      if (target < 0 || target >= vocab) {
        return make_error("{}: token id {} is outside the vocabulary [0, {})", where, target, vocab);
      }
      const double nll = token_nll(std::span<const float>(view.as<float>() + row * vocab, vocab), target);
      if (!std::isfinite(nll)) {
        return make_error("{}: the logits predicting token {} are not finite", where, window.score_begin + row);
      }
      report.window_stats.add(nll);
      result.stats.add(nll);
    }
    report.running = result.stats;
    result.windows_run = index + 1;
    if (on_window) on_window(report);
  }
  return result;
}

}  // namespace moeserve
