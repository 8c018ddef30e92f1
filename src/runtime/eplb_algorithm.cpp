#include "runtime/eplb_algorithm.h"

#include <algorithm>
#include <numeric>

#include "base/check.h"

namespace moeserve::eplb {

Packing balanced_packing(const std::vector<double>& weights, int num_packs) {
  const int items = static_cast<int>(weights.size());
  MS_CHECK(num_packs > 0 && items % num_packs == 0);
  const int per_pack = items / num_packs;
  Packing packing{std::vector<int>(items), std::vector<int>(items)};
  if (per_pack == 1) {
    std::iota(packing.pack.begin(), packing.pack.end(), 0);
    return packing;
  }
  std::vector<int> order(items);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return weights[a] > weights[b]; });
  std::vector<double> pack_weight(num_packs, 0.0);
  std::vector<int> pack_items(num_packs, 0);
  for (int item : order) {
    int best = -1;
    for (int pack = 0; pack < num_packs; ++pack) {
      if (pack_items[pack] == per_pack) continue;
      if (best < 0 || pack_weight[pack] < pack_weight[best]) best = pack;
    }
    packing.pack[item] = best;
    packing.rank_in_pack[item] = pack_items[best]++;
    pack_weight[best] += weights[item];
  }
  return packing;
}

Replication replicate_experts(const std::vector<double>& weights, int num_physical) {
  const int logical = static_cast<int>(weights.size());
  MS_CHECK(num_physical >= logical);
  Replication replication{std::vector<int>(num_physical), std::vector<int>(num_physical, 0),
                          std::vector<int>(logical, 1)};
  std::iota(replication.phys2log.begin(), replication.phys2log.begin() + logical, 0);
  for (int slot = logical; slot < num_physical; ++slot) {
    int best = 0;
    for (int expert = 1; expert < logical; ++expert) {
      if (weights[expert] / replication.log_count[expert] > weights[best] / replication.log_count[best]) best = expert;
    }
    replication.phys2log[slot] = best;
    replication.replica[slot] = replication.log_count[best]++;
  }
  return replication;
}

bool uses_hierarchical(const RebalanceParams& params) { return params.num_groups % params.num_nodes == 0; }

namespace {

std::vector<int32_t> hierarchical(const std::vector<double>& load, int num_physical, int num_groups, int num_nodes,
                                  int num_ranks) {
  const int logical = static_cast<int>(load.size());
  MS_CHECK(logical % num_groups == 0 && num_groups % num_nodes == 0 && num_ranks % num_nodes == 0 &&
           num_physical % num_ranks == 0);
  const int group_size = logical / num_groups;
  const int groups_per_node = num_groups / num_nodes;
  const int slots_per_rank = num_physical / num_ranks;
  const int logical_per_node = logical / num_nodes;
  const int slots_per_node = num_physical / num_nodes;
  const int ranks_per_node = num_ranks / num_nodes;

  // Step 1: expert groups onto nodes; "meta-logical" ids number the experts node-major.
  std::vector<double> group_load(num_groups, 0.0);
  for (int expert = 0; expert < logical; ++expert) group_load[expert / group_size] += load[expert];
  const Packing groups = balanced_packing(group_load, num_nodes);
  std::vector<int> mlog2log(logical);
  for (int expert = 0; expert < logical; ++expert) {
    const int group = expert / group_size;
    const int mlog =
        (groups.pack[group] * groups_per_node + groups.rank_in_pack[group]) * group_size + expert % group_size;
    mlog2log[mlog] = expert;
  }
  std::vector<int32_t> phys2log(num_physical);
  for (int node = 0; node < num_nodes; ++node) {
    // Step 2: replicas within the node.
    std::vector<double> node_load(logical_per_node);
    for (int j = 0; j < logical_per_node; ++j) node_load[j] = load[mlog2log[node * logical_per_node + j]];
    const Replication replicas = replicate_experts(node_load, slots_per_node);
    // Step 3: the node's replicas onto its ranks, a replica weighing load / replica count.
    std::vector<double> replica_load(slots_per_node);
    for (int slot = 0; slot < slots_per_node; ++slot) {
      const int mlog = replicas.phys2log[slot];
      replica_load[slot] = node_load[mlog] / replicas.log_count[mlog];
    }
    const Packing ranks = balanced_packing(replica_load, ranks_per_node);
    for (int slot = 0; slot < slots_per_node; ++slot) {
      const int placed = node * slots_per_node + ranks.pack[slot] * slots_per_rank + ranks.rank_in_pack[slot];
      phys2log[placed] = mlog2log[node * logical_per_node + replicas.phys2log[slot]];
    }
  }
  return phys2log;
}

}  // namespace

std::vector<int32_t> rebalance_layer(const std::vector<double>& load, const RebalanceParams& params) {
  if (uses_hierarchical(params)) {
    return hierarchical(load, params.num_physical, params.num_groups, params.num_nodes, params.num_ranks);
  }
  return hierarchical(load, params.num_physical, 1, 1, params.num_ranks);
}

double balancedness(const std::vector<double>& rank_loads) {
  if (rank_loads.empty()) return 1.0;
  const double max_load = *std::max_element(rank_loads.begin(), rank_loads.end());
  if (max_load <= 0.0) return 1.0;
  const double mean = std::accumulate(rank_loads.begin(), rank_loads.end(), 0.0) / rank_loads.size();
  return mean / max_load;
}

}  // namespace moeserve::eplb
