#include "model/expert_map.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace moeserve {

ExpertMap ExpertMap::initial(int num_logical, int num_redundant, int ep_size, ExpertPlacement placement) {
  const int physical = num_logical + num_redundant;
  MS_CHECK(physical % ep_size == 0);
  std::vector<int32_t> phys2log(physical);
  const int per_rank = physical / ep_size;
  for (int slot = 0; slot < physical; ++slot) {
    switch (placement) {
      case ExpertPlacement::kLinear:
        phys2log[slot] = slot < num_logical ? slot : (slot - num_logical) % num_logical;
        break;
      case ExpertPlacement::kRoundRobin:
        MS_CHECK(num_redundant == 0);
        phys2log[slot] = slot / per_rank + (slot % per_rank) * ep_size;
        break;
    }
  }
  return from_phys2log(std::move(phys2log), num_logical, ep_size);
}

ExpertMap ExpertMap::from_phys2log(std::vector<int32_t> phys2log, int num_logical, int ep_size) {
  ExpertMap map;
  map.num_logical = num_logical;
  map.ep_size = ep_size;
  map.phys2log = std::move(phys2log);
  map.log2phys.assign(num_logical, {});
  for (int slot = 0; slot < map.num_physical(); ++slot) {
    MS_CHECK(map.phys2log[slot] >= 0 && map.phys2log[slot] < num_logical);
    map.log2phys[map.phys2log[slot]].push_back(slot);
  }
  for (const auto& replicas : map.log2phys) MS_CHECK(!replicas.empty());
  return map;
}

std::string ExpertMap::describe_rank(int rank) const {
  const int per_rank = slots_per_rank();
  std::vector<int32_t> experts(phys2log.begin() + rank * per_rank, phys2log.begin() + (rank + 1) * per_rank);
  bool contiguous = true;
  for (size_t i = 1; i < experts.size(); ++i) contiguous = contiguous && experts[i] == experts[i - 1] + 1;
  if (contiguous && experts.size() > 1) return fmt::format("{}-{}", experts.front(), experts.back());
  return fmt::format("{}", fmt::join(experts, ","));
}

}  // namespace moeserve
