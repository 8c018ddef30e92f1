#include "model/moe_dispatch.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

namespace moeserve {

void ep_allgather_reducescatter(Communicator& ep, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                                const TensorView& out) {
  const int64_t hidden = tokens.x.dim(1);
  const int top_k = tokens.top_k;
  const std::vector<int64_t> rows = ep.all_gather_value(tokens.x.dim(0));
  const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  Tensor all_x(DType::kF32, Shape{total, hidden});
  Tensor all_slots(DType::kI32, Shape{total, top_k});
  Tensor all_weights(DType::kF32, Shape{total, top_k});
  const int64_t mine = tokens.x.dim(0);
  ep.all_gather_rows(tokens.x, rows, all_x.view());
  ep.all_gather_rows(TensorView{const_cast<int32_t*>(tokens.slots.data()), DType::kI32, Shape{mine, top_k}}, rows,
                     all_slots.view());
  ep.all_gather_rows(TensorView{const_cast<float*>(tokens.weights.data()), DType::kF32, Shape{mine, top_k}}, rows,
                     all_weights.view());
  Tensor partial(DType::kF32, Shape{total, hidden});
  const RoutedTokens gathered{.x = all_x.view(),
                              .slots = {all_slots.view().as<int32_t>(), static_cast<size_t>(total * top_k)},
                              .weights = {all_weights.f32(), static_cast<size_t>(total * top_k)},
                              .top_k = top_k};
  run_local(gathered, partial.view());
  ep.reduce_scatter_sum(partial.view(), rows, out);
}

namespace {

// The rows this rank sends in the all-to-all: per destination rank (in rank
// order), each token that has at least one slot there, once.
struct SendPlan {
  std::vector<int64_t> rows_per_rank;
  std::vector<int32_t> token_of_row;
};

SendPlan plan_sends(const RoutedTokens& tokens, int ep_size, int slots_per_rank) {
  SendPlan plan;
  plan.rows_per_rank.assign(ep_size, 0);
  const int64_t count = tokens.x.dim(0);
  for (int dst = 0; dst < ep_size; ++dst) {
    for (int64_t t = 0; t < count; ++t) {
      bool needed = false;
      for (int k = 0; k < tokens.top_k; ++k)
        needed = needed || tokens.slots[t * tokens.top_k + k] / slots_per_rank == dst;
      if (!needed) continue;
      plan.token_of_row.push_back(static_cast<int32_t>(t));
      ++plan.rows_per_rank[dst];
    }
  }
  return plan;
}

}  // namespace

void ep_alltoall(Communicator& ep, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                 int slots_per_rank, const TensorView& out) {
  const int64_t hidden = tokens.x.dim(1);
  const int top_k = tokens.top_k;
  const SendPlan plan = plan_sends(tokens, ep.size(), slots_per_rank);
  const int64_t sent = static_cast<int64_t>(plan.token_of_row.size());
  // Pack: each sent row carries the token's hidden state and all of its (slot,
  // weight) pairs; the receiver runs only the slots it owns.
  Tensor send_x(DType::kF32, Shape{sent, hidden});
  Tensor send_slots(DType::kI32, Shape{sent, top_k});
  Tensor send_weights(DType::kF32, Shape{sent, top_k});
  for (int64_t row = 0; row < sent; ++row) {
    const int64_t t = plan.token_of_row[row];
    std::memcpy(send_x.f32() + row * hidden, tokens.x.as<float>() + t * hidden, hidden * sizeof(float));
    std::memcpy(send_slots.view().as<int32_t>() + row * top_k, tokens.slots.data() + t * top_k,
                top_k * sizeof(int32_t));
    std::memcpy(send_weights.f32() + row * top_k, tokens.weights.data() + t * top_k, top_k * sizeof(float));
  }
  const std::vector<int64_t> recv_rows = ep.all_to_all_counts(plan.rows_per_rank);
  const int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  Tensor recv_x(DType::kF32, Shape{received, hidden});
  Tensor recv_slots(DType::kI32, Shape{received, top_k});
  Tensor recv_weights(DType::kF32, Shape{received, top_k});
  ep.all_to_all_rows(send_x.view(), plan.rows_per_rank, recv_x.view(), recv_rows);
  ep.all_to_all_rows(send_slots.view(), plan.rows_per_rank, recv_slots.view(), recv_rows);
  ep.all_to_all_rows(send_weights.view(), plan.rows_per_rank, recv_weights.view(), recv_rows);

  Tensor recv_out(DType::kF32, Shape{received, hidden});
  const RoutedTokens arrived{.x = recv_x.view(),
                             .slots = {recv_slots.view().as<int32_t>(), static_cast<size_t>(received * top_k)},
                             .weights = {recv_weights.f32(), static_cast<size_t>(received * top_k)},
                             .top_k = top_k};
  run_local(arrived, recv_out.view());

  // Combine: the sums come back in the order they were sent (grouped by rank),
  // so adding them row by row adds each token's partials in rank order.
  Tensor returned(DType::kF32, Shape{sent, hidden});
  ep.all_to_all_rows(recv_out.view(), recv_rows, returned.view(), plan.rows_per_rank);
  std::fill(out.as<float>(), out.as<float>() + out.numel(), 0.0f);
  for (int64_t row = 0; row < sent; ++row) {
    float* dst = out.as<float>() + static_cast<int64_t>(plan.token_of_row[row]) * hidden;
    const float* src = returned.f32() + row * hidden;
    for (int64_t d = 0; d < hidden; ++d) dst[d] += src[d];
  }
}

}  // namespace moeserve
