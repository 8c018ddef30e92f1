// EplbState: when and how the expert-parallel load balancer rearranges (vLLM's EplbState): a
// ring buffer of the last window_size steps' per-layer, per-logical-expert token counts (summed
// over all DP replicas — the EP all-reduce of the loads), a step counter that triggers a
// rearrangement every step_interval steps (the first after step_interval / 4), and per-rank
// token counts for balancedness = mean / max tokens per EP rank. The placement it computes is
// applied by the RankGroup between steps (weights move over the EP communicator).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/eplb_algorithm.h"
#include "runtime/parallel_config.h"

namespace moeserve {

class EplbState {
 public:
  EplbState(const EplbConfig& config, int num_layers, int num_logical, const eplb::RebalanceParams& params);

  // Records one step's loads: logical_counts [layers × logical]. Returns true when a
  // rearrangement is due now (the caller then calls new_placement and applies it).
  bool record_step(const std::vector<int64_t>& logical_counts);
  // The new physical → logical map of `layer` from the window's loads.
  std::vector<int32_t> new_placement(int layer) const;
  // The window's total load per logical expert of `layer`.
  std::vector<double> window_load(int layer) const;
  const eplb::RebalanceParams& params() const { return params_; }
  const EplbConfig& config() const { return config_; }

 private:
  EplbConfig config_;
  int num_layers_, num_logical_;
  eplb::RebalanceParams params_;
  std::vector<std::vector<int64_t>> window_;  // [window_size][layers × logical]
  int window_next_ = 0;
  int steps_until_ = 0;
};

// Expected tokens per EP rank of one layer under `phys2log` when each expert's load spreads
// evenly over its replicas (what a placement promises for the window it was computed from).
std::vector<double> expected_rank_load(const std::vector<double>& logical_load, const std::vector<int32_t>& phys2log,
                                       int num_ranks);

}  // namespace moeserve
