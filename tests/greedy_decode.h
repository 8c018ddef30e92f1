// Test helper: a prompt's greedy continuation through a SequenceRunner (argmax of each step's
// last logits), as the golden suites compare it with transformers' greedy tokens.
#pragma once

#include <span>
#include <stdexcept>
#include <vector>

#include "reference_data.h"
#include "runtime/cpu_model.h"
#include "runtime/sequence_runner.h"

namespace moeserve::testing {

// The `count` tokens greedy decoding appends to `prompt` (throws on a runner error).
inline std::vector<int32_t> greedy_continuation(const CpuModel& model, ExecContext& exec,
                                                const std::vector<int32_t>& prompt, int count) {
  const int vocab = model.config().vocab_size;
  SequenceRunner runner(model, exec, static_cast<int>(prompt.size()) + count);
  auto logits = runner.append(prompt, /*all_logits=*/false);
  std::vector<int32_t> generated;
  while (true) {
    if (!logits.ok()) throw std::runtime_error(logits.error().message);
    generated.push_back(argmax(logits->f32(), vocab));
    if (static_cast<int>(generated.size()) == count) return generated;
    logits = runner.append(std::span<const int32_t>(&generated.back(), 1), false);
  }
}

}  // namespace moeserve::testing
