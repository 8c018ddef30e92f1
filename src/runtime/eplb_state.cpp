#include "runtime/eplb_state.h"

namespace moeserve {

EplbState::EplbState(const EplbConfig& config, int num_layers, int num_logical, const eplb::RebalanceParams& params)
    : config_(config),
      num_layers_(num_layers),
      num_logical_(num_logical),
      params_(params),
      window_(config.window_size, std::vector<int64_t>(static_cast<size_t>(num_layers) * num_logical, 0)),
      // vLLM starts the counter at step_interval - step_interval / 4, so the first rearrangement
      // comes after a quarter interval.
      steps_until_(config.step_interval / 4) {}

bool EplbState::record_step(const std::vector<int64_t>& logical_counts) {
  window_[window_next_] = logical_counts;
  window_next_ = (window_next_ + 1) % config_.window_size;
  if (--steps_until_ > 0) return false;
  steps_until_ = config_.step_interval;
  return true;
}

std::vector<double> EplbState::window_load(int layer) const {
  std::vector<double> load(num_logical_, 0.0);
  for (const auto& step : window_) {
    for (int expert = 0; expert < num_logical_; ++expert) {
      load[expert] += static_cast<double>(step[static_cast<size_t>(layer) * num_logical_ + expert]);
    }
  }
  return load;
}

std::vector<int32_t> EplbState::new_placement(int layer) const {
  return eplb::rebalance_layer(window_load(layer), params_);
}

std::vector<double> expected_rank_load(const std::vector<double>& logical_load, const std::vector<int32_t>& phys2log,
                                       int num_ranks) {
  std::vector<int> replicas(logical_load.size(), 0);
  for (int32_t expert : phys2log) ++replicas[expert];
  const int per_rank = static_cast<int>(phys2log.size()) / num_ranks;
  std::vector<double> rank_load(num_ranks, 0.0);
  for (size_t slot = 0; slot < phys2log.size(); ++slot) {
    rank_load[slot / per_rank] += logical_load[phys2log[slot]] / replicas[phys2log[slot]];
  }
  return rank_load;
}

}  // namespace moeserve
