#include "model/moe_dispatch.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <numeric>
#include <vector>

namespace moeserve {

namespace {

// The routing of `count` tokens from `first` as the host collectives move it: one int32 row per
// token, its top_k slots then its top_k weights' bits. [count, 2 top_k]
std::vector<int32_t> pack_routing(const RoutedTokens& tokens, int64_t first, int64_t count) {
  const int top_k = tokens.top_k;
  std::vector<int32_t> rows(size_t(count) * 2 * top_k);
  for (int64_t t = 0; t < count; ++t) {
    for (int k = 0; k < top_k; ++k) {
      const size_t i = size_t(first + t) * top_k + k;
      rows[size_t(t) * 2 * top_k + k] = tokens.slots[i];
      rows[size_t(t) * 2 * top_k + top_k + k] = std::bit_cast<int32_t>(tokens.weights[i]);
    }
  }
  return rows;
}

// The slots [n × top_k] and weights [n × top_k] of packed routing rows.
struct Routing {
  std::vector<int32_t> slots;
  std::vector<float> weights;
};

Routing unpack_routing(const std::vector<int32_t>& rows, int top_k) {
  const size_t n = rows.size() / (2 * top_k);
  Routing r{std::vector<int32_t>(n * top_k), std::vector<float>(n * top_k)};
  for (size_t t = 0; t < n; ++t) {
    for (int k = 0; k < top_k; ++k) {
      r.slots[t * top_k + k] = rows[t * 2 * top_k + k];
      r.weights[t * top_k + k] = std::bit_cast<float>(rows[t * 2 * top_k + top_k + k]);
    }
  }
  return r;
}

TensorView rows_view(int32_t* data, int64_t rows, int top_k) {
  return TensorView{data, DType::kI32, Shape{rows, 2 * top_k}};
}

TensorView f32_rows(float* data, int64_t rows, int64_t hidden) {
  return TensorView{data, DType::kF32, Shape{rows, hidden}};
}

// Every rank's token count, and the tokens a round takes from each rank: as many as the smallest
// free arena of the group holds when every rank's round tokens may arrive at one rank.
struct Rounds {
  std::vector<int64_t> counts;
  int64_t per_round = 1;
  int64_t rounds = 0;
};

Rounds plan_rounds(const EpDispatch& d, int64_t count, size_t arrived_row_bytes) {
  Communicator& meta = d.ep.host_group();
  const StepArena& arena = d.backend.arena();
  const size_t free_bytes = arena.capacity() - arena.used();
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  // (the alignment padding of a round's allocations, 256 bytes each at most, and their index
  // words: 4 a row)
  constexpr size_t kPadding = 8192;
  const int64_t fit = std::clamp<int64_t>(int64_t(free_bytes > kPadding ? free_bytes - kPadding : 0) /
                                              int64_t((arrived_row_bytes + 4 * sizeof(int32_t)) * meta.size()),
                                          1, kMax);
  const std::vector<int64_t> packed = meta.all_gather_value(fit << 32 | std::min(count, kMax));
  Rounds r;
  r.per_round = kMax;
  int64_t most = 0;
  for (const int64_t value : packed) {
    r.counts.push_back(value & kMax);
    r.per_round = std::min(r.per_round, value >> 32);
    most = std::max(most, r.counts.back());
  }
  r.rounds = (most + r.per_round - 1) / r.per_round;
  return r;
}

// How many of rank's tokens round `round` takes (from round × per_round on).
int64_t round_rows(const Rounds& r, int rank, int64_t round) {
  return std::clamp<int64_t>(r.counts[rank] - round * r.per_round, 0, r.per_round);
}

}  // namespace

void ep_allgather_reducescatter(const EpDispatch& d, const RoutedTokens& tokens, const RunLocalExperts& run_local,
                                const TensorView& out) {
  Communicator& meta = d.ep.host_group();
  StepArena& arena = d.backend.arena();
  const int64_t hidden = out.dim(1);
  const int top_k = tokens.top_k;
  // Per arrived row: its x and its partial sum, run_local's buffers, 2 top_k routing words.
  const Rounds r = plan_rounds(d, tokens.x.dim(0), 2 * hidden * sizeof(float) + d.run_local_bytes_per_row);
  const int me = d.ep.rank();
  for (int64_t round = 0; round < r.rounds; ++round) {
    std::vector<int64_t> rows(d.ep.size());
    for (int s = 0; s < d.ep.size(); ++s) rows[s] = round_rows(r, s, round);
    const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
    const int64_t first = round * r.per_round;
    std::vector<int32_t> mine = pack_routing(tokens, first, rows[me]);
    std::vector<int32_t> all(size_t(total) * 2 * top_k);
    meta.all_gather_rows(rows_view(mine.data(), rows[me], top_k), rows, rows_view(all.data(), total, top_k));
    const Routing routing = unpack_routing(all, top_k);
    const size_t mark = arena.used();
    float* all_x = arena.alloc<float>(size_t(total) * hidden);    // [total, hidden]
    float* partial = arena.alloc<float>(size_t(total) * hidden);  // [total, hidden]
    d.ep.all_gather_rows(f32_rows(tokens.x.as<float>() + first * hidden, rows[me], hidden), rows,
                         f32_rows(all_x, total, hidden));
    run_local(
        RoutedTokens{
            .x = f32_rows(all_x, total, hidden), .slots = routing.slots, .weights = routing.weights, .top_k = top_k},
        f32_rows(partial, total, hidden));
    d.ep.reduce_scatter_sum(f32_rows(partial, total, hidden), rows,
                            f32_rows(out.as<float>() + first * hidden, rows[me], hidden));
    arena.rewind(mark);
  }
}

namespace {

// The rows this rank sends in the all-to-all: per destination rank (in rank
// order), each token that has at least one slot there, once.
struct SendPlan {
  std::vector<int64_t> rows_per_rank;
  std::vector<int32_t> token_of_row;
};

SendPlan plan_sends(const RoutedTokens& tokens, int64_t first, int64_t count, int ep_size, int slots_per_rank) {
  SendPlan plan;
  plan.rows_per_rank.assign(ep_size, 0);
  for (int dst = 0; dst < ep_size; ++dst) {
    for (int64_t t = 0; t < count; ++t) {
      bool needed = false;
      for (int k = 0; k < tokens.top_k; ++k)
        needed = needed || tokens.slots[(first + t) * tokens.top_k + k] / slots_per_rank == dst;
      if (!needed) continue;
      plan.token_of_row.push_back(static_cast<int32_t>(t));
      ++plan.rows_per_rank[dst];
    }
  }
  return plan;
}

}  // namespace

void ep_alltoall(const EpDispatch& d, const RoutedTokens& tokens, const RunLocalExperts& run_local, int slots_per_rank,
                 const TensorView& out) {
  Communicator& meta = d.ep.host_group();
  StepBackend& b = d.backend;
  StepArena& arena = b.arena();
  const int64_t hidden = out.dim(1);
  const int top_k = tokens.top_k;
  const int ep_size = d.ep.size();
  // A token's sums come back from at most this many ranks (one row each).
  const int fan_out = std::min(top_k, ep_size);
  // Per arrived row: its x and its sum, and per sent row (no more of them) the same two.
  const Rounds r = plan_rounds(d, tokens.x.dim(0), 4 * hidden * sizeof(float) + d.run_local_bytes_per_row);
  for (int64_t round = 0; round < r.rounds; ++round) {
    const int64_t first = round * r.per_round;
    const int64_t count = round_rows(r, d.ep.rank(), round);
    const SendPlan plan = plan_sends(tokens, first, count, ep_size, slots_per_rank);
    const int64_t sent = static_cast<int64_t>(plan.token_of_row.size());
    const std::vector<int64_t> recv_rows = meta.all_to_all_counts(plan.rows_per_rank);
    const int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
    // The routing: each sent row carries all of its token's (slot, weight) pairs; the receiver
    // runs only the slots it owns.
    const std::vector<int32_t> round_routing = pack_routing(tokens, first, count);  // [count, 2 top_k]
    std::vector<int32_t> send_routing(size_t(sent) * 2 * top_k);                      // [sent, 2 top_k]
    for (int64_t row = 0; row < sent; ++row) {
      std::copy_n(round_routing.begin() + int64_t(plan.token_of_row[row]) * 2 * top_k, 2 * top_k,
                  send_routing.begin() + row * 2 * top_k);
    }
    std::vector<int32_t> recv_routing(size_t(received) * 2 * top_k);
    meta.all_to_all_rows(rows_view(send_routing.data(), sent, top_k), plan.rows_per_rank,
                         rows_view(recv_routing.data(), received, top_k), recv_rows);
    const Routing routing = unpack_routing(recv_routing, top_k);

    const size_t mark = arena.used();
    const float* x = tokens.x.as<float>() + first * hidden;
    float* send_x = arena.alloc<float>(size_t(sent) * hidden);        // [sent, hidden]
    float* recv_x = arena.alloc<float>(size_t(received) * hidden);    // [received, hidden]
    float* recv_out = arena.alloc<float>(size_t(received) * hidden);  // [received, hidden]
    float* returned = arena.alloc<float>(size_t(sent) * hidden);      // [sent, hidden]
    if (sent > 0) {
      auto* rows_dev = arena.alloc<int32_t>(sent);
      b.upload(rows_dev, plan.token_of_row.data(), sent * sizeof(int32_t));
      b.gather_rows(x, static_cast<int>(hidden), rows_dev, static_cast<int>(sent), send_x, nullptr);
    }
    d.ep.all_to_all_rows(f32_rows(send_x, sent, hidden), plan.rows_per_rank, f32_rows(recv_x, received, hidden),
                         recv_rows);
    run_local(RoutedTokens{.x = f32_rows(recv_x, received, hidden),
                           .slots = routing.slots,
                           .weights = routing.weights,
                           .top_k = top_k},
              f32_rows(recv_out, received, hidden));
    d.ep.all_to_all_rows(f32_rows(recv_out, received, hidden), recv_rows, f32_rows(returned, sent, hidden),
                         plan.rows_per_rank);
    // Combine: token t's returned rows, in rank order (sent rows are grouped by rank), each of
    // weight 1; unused entries have weight 0 and add nothing.
    if (count > 0) {
      std::vector<int32_t> positions(size_t(count) * fan_out, 0);
      std::vector<float> weights(size_t(count) * fan_out, 0.0f);
      std::vector<int> filled(count, 0);
      for (int64_t row = 0; row < sent; ++row) {
        const int32_t t = plan.token_of_row[row];
        const size_t entry = size_t(t) * fan_out + filled[t]++;
        positions[entry] = static_cast<int32_t>(row);
        weights[entry] = 1.0f;
      }
      auto* positions_dev = arena.alloc<int32_t>(positions.size());
      auto* weights_dev = arena.alloc<float>(weights.size());
      b.upload(positions_dev, positions.data(), positions.size() * sizeof(int32_t));
      b.upload(weights_dev, weights.data(), weights.size() * sizeof(float));
      b.moe_combine(ops::MoeCombineArgs{.expert_out = returned,
                                        .positions = positions_dev,
                                        .weights = weights_dev,
                                        .tokens = static_cast<int>(count),
                                        .top_k = fan_out,
                                        .hidden = static_cast<int>(hidden),
                                        .out = out.as<float>() + first * hidden});
    }
    arena.rewind(mark);
  }
}

}  // namespace moeserve
