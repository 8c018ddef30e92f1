// DeepSeek's expert-parallel load balancer (the EPLB algorithm vLLM uses): given each logical
// expert's load in one MoE layer, choose which logical expert every physical slot holds —
// replicate the hottest experts into the redundant slots, then pack the replicas onto the ranks
// so that each rank's expected load (a replica carries its expert's load / replica count) is as
// even as possible, every rank getting exactly num_physical / num_ranks slots.
// hierarchical: when the expert groups divide evenly over the nodes, groups are first packed
// onto nodes (so a token's groups stay within a node), then replicated and packed within each
// node; otherwise the global policy treats everything as one group on one node.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve::eplb {

// Splits items with weights w into num_packs packs of exactly w.size() / num_packs items:
// heaviest first, each into the lightest pack that still has room (the first on ties).
// pack[i] and rank_in_pack[i] for item i.
struct Packing {
  std::vector<int> pack;
  std::vector<int> rank_in_pack;
};
Packing balanced_packing(const std::vector<double>& weights, int num_packs);

// Replicates experts into num_physical slots: slot i < N holds expert i, each further slot a
// replica of the expert with the highest load per replica (the first on ties).
struct Replication {
  std::vector<int> phys2log;   // [num_physical]
  std::vector<int> replica;    // [num_physical] which replica of its expert a slot is
  std::vector<int> log_count;  // [N] replicas per expert
};
Replication replicate_experts(const std::vector<double>& weights, int num_physical);

struct RebalanceParams {
  int num_physical = 0;  // multiple of num_ranks
  int num_groups = 1;    // expert groups (DeepSeek's n_group), dividing the experts
  int num_nodes = 1;     // ranks are split evenly over nodes
  int num_ranks = 1;
};

// True when the hierarchical policy applies (num_groups divisible by num_nodes).
bool uses_hierarchical(const RebalanceParams& params);
// The new physical → logical map of one layer, slots rank-major.
std::vector<int32_t> rebalance_layer(const std::vector<double>& load, const RebalanceParams& params);

// mean / max over ranks of the ranks' loads (1 = perfectly even; 1 when there is no load).
double balancedness(const std::vector<double>& rank_loads);

}  // namespace moeserve::eplb
