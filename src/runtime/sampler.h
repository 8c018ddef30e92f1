// Token sampling from one row of logits, following vLLM's order: penalties → temperature →
// top-k → top-p → min-p → draw. temperature == 0 is greedy (argmax, lowest id on ties). A
// request's draws come from its own generator seeded by `seed`, so its output does not depend
// on what else is in the batch.
//
// The pipeline is split so a device can run it on logits that never leave it (the CUDA
// runner's sample_rows): the host turns a request's state into a TokenChoice — its parameters,
// the per-token edits (masks and penalties) and the one uniform draw the step consumes — and
// apply_edits + sample_with_uniform is then the whole choice, on the host or the device alike.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace moeserve {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;  // 0 or -1: disabled
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  std::optional<uint64_t> seed;
};

// The penalties a request asks for: over prompt and output tokens (repetition), over output
// tokens counted (presence / frequency).
inline bool repetition_penalized(const SamplingParams& p) { return p.repetition_penalty != 1.0f; }
inline bool count_penalized(const SamplingParams& p) {
  return p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

// One token's edit before sampling (16 bytes, uploaded as is). masked: the logit becomes −inf
// (min_tokens hides EOS and stop tokens). Otherwise, when repetition_penalty != 1 and the token
// is `seen` (in the prompt or the output): logit > 0 ? logit / r : logit · r; then, when it is
// in the output output_count > 0 times: logit −= frequency · count + presence (as vLLM).
struct LogitEdit {
  int32_t token = 0;
  int32_t output_count = 0;
  int32_t seen = 0;
  int32_t masked = 0;
};

// Everything that picks one sequence's next token from its logits row.
struct TokenChoice {
  SamplingParams params;
  double uniform = 0.0;          // the request's draw in [0, 1) (unused when greedy)
  std::vector<LogitEdit> edits;  // distinct tokens, ascending
  // >= 0: also the raw log-probabilities (compute_logprobs) of the picked token and of the top
  // `logprobs` tokens; only for rows without edits, whose sorted row is the raw row.
  int logprobs = -1;
  bool greedy() const { return params.temperature <= 0.0f; }
  // The plain argmax of the row: nothing read from or added to it.
  bool argmax_only() const { return greedy() && edits.empty() && logprobs < 0; }
};

// The edits for a row of `vocab` logits: penalties over the prompt and the output so far, and
// `masked` tokens (ids outside the vocabulary are ignored). Empty when nothing applies.
std::vector<LogitEdit> logit_edits(const SamplingParams& params, int vocab, std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> output_ids, std::span<const int32_t> masked = {});
void apply_edits(std::span<float> logits, const SamplingParams& params, std::span<const LogitEdit> edits);

// logit_edits kept up to date one output token at a time, for a request with penalties: the
// prompt's ids are sorted once and each sampled token is merged in, so a step costs O(edits)
// instead of sorting the prompt and the output again (a repetition penalty over a long prompt).
// edits(masked) == logit_edits(params, vocab, prompt_ids, the outputs added so far, masked).
class LogitEditTracker {
 public:
  LogitEditTracker(const SamplingParams& params, int vocab, std::span<const int32_t> prompt_ids);
  void add_output(int32_t token);
  std::vector<LogitEdit> edits(std::span<const int32_t> masked = {}) const;

 private:
  // The edit of `token` in `edits` (inserted in order when new), or null outside the vocabulary.
  LogitEdit* edit_of(std::vector<LogitEdit>& edits, int32_t token) const;

  bool repetition_ = false;
  bool counted_ = false;
  int vocab_ = 0;
  std::vector<LogitEdit> marks_;  // ascending tokens: the penalties' edits (masks are per step)
};

// The draw a sampled (temperature > 0) step consumes from the request's generator.
double draw_uniform(std::mt19937_64& rng);

int32_t argmax_token(std::span<const float> logits);

// Picks the next token of an edited row with the draw `uniform` ∈ [0, 1): candidates in
// descending logit order (lowest id first on ties), probabilities exp(logit / T − max) in
// double, cut by top-k, top-p and min-p, then the first whose cumulative probability reaches
// uniform × the kept total. `logits` is not modified.
int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double uniform);

namespace sampler_internal {
// exp(x) for x in [−38.5, 0] within 2.3e-16 (relative) of std::exp, checked for every float x in
// that range; vectorisable (sample_with_uniform's terms): 2^n · e^r with n = round(x / ln 2) (by the
// 1.5 · 2^52 shift, whose low bits then hold n), r = x − n ln 2 (ln 2 in two parts) in
// [−0.35, 0.35], e^r by its Taylor polynomial of degree 13 (remainder < 5e-18).
inline double approx_exp(double x) {
  constexpr double kShift = 0x1.8p52;
  const double t = x * 1.4426950408889634 + kShift;
  const double n = t - kShift;
  double r = x - n * 0x1.62e42fefa3800p-1;
  r = r - n * 0x1.ef35793c76730p-45;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  return p * std::bit_cast<double>((std::bit_cast<uint64_t>(t) + 1023) << 52);
}

// sample_with_uniform's fast path alone: its token, or nullopt where it leaves the row to the exact
// path (NaN or infinite logits, logit / T overflowing, or a decision closer than its margin).
std::optional<int32_t> sample_fast(std::span<const float> logits, const SamplingParams& params, double uniform);
}  // namespace sampler_internal

// Greedy, or sample_with_uniform with a fresh draw from `rng`.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng);

}  // namespace moeserve
