// Expert-parallel dispatch → experts → combine over the EP communicator. Tokens arrive with
// their physical slot ids and routing weights; each rank runs only the experts in its slots.
// Two backends, the same result up to float summation order (partials are always added in
// EP-rank order, so the result never depends on timing):
//   allgather_reducescatter: every rank gathers every rank's tokens, computes its experts'
//     weighted outputs for all of them, and a reduce-scatter returns each rank its tokens' sums;
//   alltoall: each token row travels only to the ranks owning one of its slots (once per rank),
//     the weighted expert sums travel back, and the sender adds them in rank order.
#pragma once

#include <functional>
#include <span>

#include "comm/communicator.h"
#include "kernels/ops.h"

namespace moeserve {

// Tokens to send to the experts: x [n, hidden], slots/weights [n × top_k].
struct RoutedTokens {
  TensorView x;
  std::span<const int32_t> slots;
  std::span<const float> weights;
  int top_k = 0;
};

// What a rank computes for the tokens that reach it: out [n, hidden] (overwritten) = Σ over the
// (t, k) whose slot is this rank's of weights[t,k] · expert_{slots[t,k]}(x[t]). A backend
// supplies it (the decoder loop: its slots' grouped experts).
using RunLocalExperts = std::function<void(const RoutedTokens& tokens, const TensorView& out)>;

// out [n, hidden] (overwritten) = the full routed expert sum of every local
// token. slots_per_rank maps a slot to its owner (slot / slots_per_rank).
void ep_allgather_reducescatter(Communicator& ep, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                                const TensorView& out);
void ep_alltoall(Communicator& ep, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                 int slots_per_rank, const TensorView& out);

}  // namespace moeserve
