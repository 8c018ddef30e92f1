// MultiNodeConfig: vLLM's multi-node data parallelism, with its flags and meanings. One
// deployment of --data-parallel-size D replicas is started by one `moeserve serve` per node, each
// running --data-parallel-size-local L of the replicas, from --data-parallel-start-rank R on:
//
//   leader (serves HTTP; runs every replica's scheduler): DP ranks [0, L), hosts the rendezvous
//     at --data-parallel-address A : --data-parallel-rpc-port P (an address of its own that the
//     other nodes reach)
//   --headless node: DP ranks [R, R + L), no HTTP server; its rank workers join the leader's
//     gloo groups and ZeroMQ control plane through A:P
//
// A replica's TP ranks stay on its node; the EP group spans every node. How the processes find
// each other and fail: runtime/headless_node.h, runtime/process_ranks.h, docs/distributed.md.
#pragma once

#include <chrono>
#include <string>

#include "base/result.h"

namespace moeserve {

enum class DistributedExecutor;

struct MultiNodeConfig {
  static constexpr int kDefaultRpcPort = 29550;  // vLLM's data_parallel_rpc_port
  static constexpr int kAllReplicas = -1;

  int size_local = kAllReplicas;   // --data-parallel-size-local; absent: the replicas from start_rank on
  int start_rank = 0;              // --data-parallel-start-rank
  std::string address;             // --data-parallel-address; empty when not given
  int rpc_port = kDefaultRpcPort;  // --data-parallel-rpc-port
  bool headless = false;           // --headless
  // How long a node waits for the others: a headless node for the leader to appear, the leader
  // for the ranks of other nodes to connect (every rank then waits up to twice this at its
  // groups' rendezvous). vLLM's VLLM_ENGINE_READY_TIMEOUT_S, default 600 s.
  std::chrono::milliseconds ready_timeout{600'000};

  // The DP replicas this node runs: [first_local(), first_local() + local_replicas(dp)).
  int local_replicas(int dp) const { return size_local == kAllReplicas ? dp - start_rank : size_local; }
  int first_local() const { return start_rank; }
  bool is_local_replica(int dp_rank, int dp) const {
    return dp_rank >= first_local() && dp_rank < first_local() + local_replicas(dp);
  }
  // Whether replicas of this deployment run on another node.
  bool spans_nodes(int dp) const { return headless || local_replicas(dp) < dp; }
  // Whether the rendezvous is at the address and port given (multi-node, or a single node that
  // named them) rather than a free port of 127.0.0.1.
  bool fixed_rendezvous(int dp) const { return spans_nodes(dp) || !address.empty(); }
  std::string rendezvous_address() const { return address.empty() ? "127.0.0.1" : address; }

  // The rules between the flags, checked before anything starts (`executor`: resolved; a
  // deployment that spans nodes needs mp).
  Status validate(int dp, DistributedExecutor executor) const;

  // "DP ranks 0-0 here, 1-1 on other nodes (rendezvous 10.0.0.1:29550)"; empty on one node.
  std::string describe(int dp) const;
};

// --data-parallel-address as the nodes use it: an IP address as given, a host name resolved to
// its first IPv4 address (else its first IPv6 one). ZeroMQ binds and gloo's pairs need numbers,
// and every node must mean the same host.
Result<std::string> resolve_node_address(const std::string& address);

// VLLM_ENGINE_READY_TIMEOUT_S (seconds, a positive integer); unset: 600 s.
Result<std::chrono::milliseconds> ready_timeout_from_env(const char* value);

}  // namespace moeserve
