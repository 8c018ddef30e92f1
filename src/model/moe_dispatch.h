// Expert-parallel dispatch → experts → combine over the EP communicator. Tokens arrive with
// their physical slot ids and routing weights; each rank runs only the experts in its slots.
// Two backends, the same result up to float summation order (partials are added in EP-rank
// order, or NCCL's, so the result never depends on timing):
//   allgather_reducescatter: every rank gathers every rank's tokens, computes its experts'
//     weighted outputs for all of them, and a reduce-scatter returns each rank its tokens' sums;
//   alltoall: each token row travels only to the ranks owning one of its slots (once per rank),
//     the weighted expert sums travel back, and the sender adds them in rank order.
//
// Where the data lives: token rows and expert sums stay in the backend's memory (a CUDA rank's
// device; its EP communicator takes device buffers: comm/nccl or a staged group), moved by the
// EP communicator and packed / combined by the backend's ops. The routing (slots and weights, a
// few bytes a token) is planned on the host and moves over the EP group's host_group().
//
// Rounds: each round takes up to the same number of tokens from every rank, as many as the
// smallest free workspace of the group holds, so the rows that reach a rank (up to EP size ×
// its own) never outgrow its step arena; a decode step is one round.
#pragma once

#include <functional>
#include <span>

#include "comm/communicator.h"
#include "model/step_model.h"

namespace moeserve {

// Tokens to send to the experts: x [n, hidden] float32 in the backend's memory, slots/weights
// [n × top_k] on the host.
struct RoutedTokens {
  TensorView x;
  std::span<const int32_t> slots;
  std::span<const float> weights;
  int top_k = 0;
};

// What a rank computes for the tokens that reach it: out [n, hidden] (backend memory,
// overwritten) = Σ over the (t, k) whose slot is this rank's of weights[t,k] ·
// expert_{slots[t,k]}(x[t]). A backend supplies it (the decoder loop: its slots' grouped
// experts); it may allocate from the arena past what the dispatch holds.
using RunLocalExperts = std::function<void(const RoutedTokens& tokens, const TensorView& out)>;

// One dispatch: the EP group, the backend whose ops pack and combine rows (and whose arena holds
// a round's buffers), and the arena bytes run_local needs per arrived row.
struct EpDispatch {
  Communicator& ep;
  StepBackend& backend;
  size_t run_local_bytes_per_row = 0;
};

// out [n, hidden] (backend memory, overwritten) = the full routed expert sum of every local
// token. slots_per_rank maps a slot to its owner (slot / slots_per_rank).
void ep_allgather_reducescatter(const EpDispatch& d, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                                const TensorView& out);
void ep_alltoall(const EpDispatch& d, const RoutedTokens& tokens, const RunLocalExperts& run_local, int slots_per_rank,
                 const TensorView& out);

}  // namespace moeserve
