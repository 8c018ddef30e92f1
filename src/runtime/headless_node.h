// A --headless node (vLLM's multi-node data parallelism): runs DP replicas
// [--data-parallel-start-rank, + --data-parallel-size-local) of a deployment whose leader — the
// `moeserve serve` that serves HTTP and schedules every replica — runs on another node at
// --data-parallel-address : --data-parallel-rpc-port. This process serves nothing itself: it
// meets the leader at its rendezvous store, reads the deployment the leader published there
// (the workers' SPEC, runtime/mp/worker_spec.h, and each rank's ZeroMQ endpoint), checks that
// this node was started with the same layout and model, and starts one `moeserve _worker` per
// rank of its replicas. The workers load their shards from this node's MODEL, join the gloo
// groups and take their steps from the leader, exactly as the leader's own workers do.
//
// Lifetime: the node exits 0 when the leader ends the deployment (its workers were told to
// quit). It fails (status 1, the reason logged at critical level) when one of its workers dies
// — it ends the others, and the leader, seeing their connections close, exits too — or when the
// leader goes away or stops answering (PeerMonitor-like: the store connection closes, or a
// liveness request gets no answer within 10 s). Implemented by runtime/mp/ (no_mp/ refuses).
#pragma once

#include <string>

#include "base/result.h"
#include "runtime/parallel_config.h"

namespace moeserve {

// An error when the node cannot join: the leader does not appear within
// parallel.nodes.ready_timeout, or runs another layout or model. Once its workers run, the
// exit status of the node (0: the leader ended the deployment; 1: a failure, logged).
Result<int> run_headless_node(const std::string& model_dir, const ParallelConfig& parallel);

}  // namespace moeserve
