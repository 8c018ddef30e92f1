#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace moeserve {
namespace {

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Dimension index whose wavelength makes `rotations` turns over the original context.
double yarn_correction_dim(double rotations, int dim, double base, int max_position) {
  return dim * std::log(max_position / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

void apply_yarn(const RopeConfig& config, int dim, std::vector<double>& inv_freq, float& attention_factor) {
  double low = yarn_correction_dim(config.beta_fast, dim, config.theta, config.original_max_position);
  double high = yarn_correction_dim(config.beta_slow, dim, config.theta, config.original_max_position);
  if (config.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_factor = 1.0 - ramp;
    const double extrapolated = inv_freq[i];
    const double interpolated = inv_freq[i] / config.factor;
    inv_freq[i] = interpolated * (1.0 - extrapolation_factor) + extrapolated * extrapolation_factor;
  }
  if (config.attention_factor) {
    attention_factor = static_cast<float>(*config.attention_factor);
  } else if (config.mscale != 0.0 && config.mscale_all_dim != 0.0) {
    attention_factor = static_cast<float>(yarn_get_mscale(config.factor, config.mscale) /
                                          yarn_get_mscale(config.factor, config.mscale_all_dim));
  } else {
    attention_factor = static_cast<float>(yarn_get_mscale(config.factor, 1.0));
  }
}

void apply_llama3(const RopeConfig& config, std::vector<double>& inv_freq) {
  const double low_freq_wavelen = config.original_max_position / config.low_freq_factor;
  const double high_freq_wavelen = config.original_max_position / config.high_freq_factor;
  for (double& freq : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen > low_freq_wavelen) {
      freq /= config.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (config.original_max_position / wavelen - config.low_freq_factor) /
                            (config.high_freq_factor - config.low_freq_factor);
      freq = (1.0 - smooth) * freq / config.factor + smooth * freq;
    }
  }
}

}  // namespace

RopeTable build_rope_table(const RopeConfig& config) {
  const int dim = config.rotary_dim;
  std::vector<double> inv_freq(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    // HF computes base ** (2i / dim) in float32; round the exponent the same way.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv_freq[i] = 1.0 / std::pow(config.theta, static_cast<double>(exponent));
  }
  RopeTable table;
  table.interleaved = config.layout == RopeLayout::kInterleaved;
  switch (config.kind) {
    case RopeKind::kDefault:
      break;
    case RopeKind::kLinear:
      for (double& freq : inv_freq) freq /= config.factor;
      break;
    case RopeKind::kYarn:
      apply_yarn(config, dim, inv_freq, table.attention_factor);
      break;
    case RopeKind::kLlama3:
      apply_llama3(config, inv_freq);
      break;
  }
  table.inv_freq.assign(inv_freq.begin(), inv_freq.end());
  return table;
}

}  // namespace moeserve
