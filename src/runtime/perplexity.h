// Perplexity of a model on a text (`moeserve perplexity`, issue 21): the text's token ids are cut
// into windows of at most ctx_size tokens that overlap by ctx_size − stride, every token is scored
// exactly once (in the first window that reaches it), and its negative log-likelihood comes from
// a log-softmax in double over the logits of the position before it. PPL = exp(mean NLL).
//
// Windows (Hugging Face's strided evaluation, with BOS as llama-perplexity adds it):
//   - With a BOS id, every window is BOS followed by up to ctx_size − 1 text tokens, and the first
//     text token is scored too (predicted from BOS alone); without one, a window is up to ctx_size
//     text tokens and the text's first token is never scored.
//   - The first window scores all its tokens. Each later window moves its end `stride` tokens on
//     (the last one stops at the text's end), keeps the most context that fits before them, and
//     scores only the tokens past the previous window's end: with stride = ctx_size / 2, the
//     second half of the window, each token seeing at least ctx_size − stride tokens before it.
//   llama-perplexity instead cuts non-overlapping chunks and scores their second halves only,
//   leaving the first halves unscored; here every token counts.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "runtime/sequence_runner.h"
#include "tensor/tensor.h"

namespace moeserve {

// −log softmax(logits)[target] in double (max-subtracted log-sum-exp). `logits`: float32 [vocab].
// NaN or infinity when the logits are not finite; the caller checks.
double token_nll(std::span<const float> logits, int32_t target);

// Running mean and spread of per-token NLLs (Welford's update, so long texts lose no precision).
struct NllStats {
  int64_t count = 0;
  double mean = 0.0;  // nats per token
  double m2 = 0.0;    // sum of squared deviations from the mean

  void add(double nll);
  double perplexity() const;  // exp(mean)
  // Standard error of the mean NLL as llama-perplexity estimates it: sqrt(var / (count − 1)) with
  // var the population variance (= sample variance / count). NaN for fewer than two tokens.
  double mean_stderr() const;
  // Propagated to the perplexity (d exp(x) = exp(x) dx): perplexity() * mean_stderr().
  double perplexity_stderr() const;
};

// One window over the text's ids: ids[begin, end) follow the BOS (when there is one), and
// ids[score_begin, end) are the tokens scored in it.
struct PerplexityWindow {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t score_begin = 0;

  bool operator==(const PerplexityWindow&) const = default;
};

// The windows for `num_tokens` text ids (see the top of this file). Refused: ctx_size < 2,
// stride outside [1, ctx_size − 1], fewer than 2 tokens.
Result<std::vector<PerplexityWindow>> plan_perplexity_windows(int64_t num_tokens, int ctx_size, int stride,
                                                              bool with_bos);

struct PerplexityOptions {
  int ctx_size = 512;
  int stride = 256;
  std::optional<int32_t> bos_id;  // prepended to every window when set
  int64_t max_windows = 0;        // run only the first ones; 0 = all
};

// Runs one window as a new sequence: `context` (maybe empty), whose logits are not needed, then
// `rows`, and returns the logits of `rows`: float32 [rows.size(), vocab]. Row r predicts the
// token after rows[r].
using WindowRunner = std::function<Result<Tensor>(std::span<const int32_t> context, std::span<const int32_t> rows)>;

// A WindowRunner over `runner` (whose capacity must hold a window): reset() per window, the
// context appended without logits, then the rows with all their logits.
WindowRunner sequence_window_runner(SequenceRunner& runner);

struct WindowReport {
  int64_t index = 0;  // 0-based
  int64_t total = 0;  // windows that will run
  PerplexityWindow window;
  NllStats window_stats;  // this window's scored tokens
  NllStats running;       // every token scored so far
};

struct PerplexityResult {
  NllStats stats;
  int64_t windows_run = 0;
  int64_t windows_total = 0;  // of the whole text (more than windows_run with max_windows)
};

// Scores `ids` (the text's tokens, no BOS) window by window through `run`, calling `on_window`
// (when set) after each. Errors: those of plan_perplexity_windows, a runner error (with the
// window's number), logits of the wrong shape, non-finite logits.
Result<PerplexityResult> compute_perplexity(std::span<const int32_t> ids, const PerplexityOptions& options,
                                            const WindowRunner& run,
                                            const std::function<void(const WindowReport&)>& on_window = {});

}  // namespace moeserve
