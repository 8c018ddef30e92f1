// RoPE frequency tables from a RopeConfig (default, linear, YaRN, Llama-3), computed as HF's
// rope init functions do; the kernel (ops::rope) applies them.
#pragma once

#include <vector>

#include "kernels/ops.h"
#include "model/config.h"

namespace moeserve {

struct RopeTable {
  std::vector<float> inv_freq;  // [rotary_dim / 2]
  float attention_factor = 1.0f;
  bool interleaved = false;

  ops::RopeParams params(int rotary_offset = 0) const {
    return ops::RopeParams{inv_freq, rotary_offset, attention_factor, interleaved};
  }
};

RopeTable build_rope_table(const RopeConfig& config);

}  // namespace moeserve
