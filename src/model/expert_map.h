// ExpertMap: the physical expert slots of one MoE layer under expert
// parallelism and the logical expert each holds. Invariant: slots are laid out
// rank-major (slot p lives on EP rank p / slots_per_rank()); every logical
// expert has at least one slot; log2phys[e] lists e's slots in ascending order.
// With EPLB there are num_redundant extra slots holding replicas of hot
// experts, and a (token, k) assignment picks replica position % replica count
// (vLLM's deterministic spread), so every rank computes the same choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/parallel.h"

namespace moeserve {

struct ExpertMap {
  int num_logical = 0;
  int ep_size = 1;
  std::vector<int32_t> phys2log;               // [P]
  std::vector<std::vector<int32_t>> log2phys;  // [N][replicas]

  int num_physical() const { return static_cast<int>(phys2log.size()); }
  int slots_per_rank() const { return num_physical() / ep_size; }
  int owner(int32_t slot) const { return slot / slots_per_rank(); }
  int32_t slot_for(int32_t logical, int64_t position) const {
    const std::vector<int32_t>& replicas = log2phys[logical];
    return replicas[position % static_cast<int64_t>(replicas.size())];
  }

  // linear: slot p holds expert p, redundant slots p ≥ N hold (p − N) mod N
  // (vLLM's initial map); round_robin (no redundant slots): local slot j of
  // rank r holds expert r + j·ep.
  static ExpertMap initial(int num_logical, int num_redundant, int ep_size, ExpertPlacement placement);
  static ExpertMap from_phys2log(std::vector<int32_t> phys2log, int num_logical, int ep_size);
  // "0-1" or "0,2,4" style list of the logical experts on `rank` (for the
  // startup log).
  std::string describe_rank(int rank) const;
};

}  // namespace moeserve
