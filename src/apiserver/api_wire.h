// The messages between the API-server processes and the engine process's frontend
// (--api-server-count N > 1). Each API server holds a ZeroMQ DEALER connected to the engine's
// ROUTER over ipc:// in a directory only this user can enter; one message per ZeroMQ message
// (the ROUTER adds and strips the peer's identity frame). The first byte names the message; the
// body is in engine/request_codec.h's encoding (this host's integers and floats, u64-length
// strings and arrays):
//   API server → engine
//     'H' hello      i32 index                          → 'C'
//     'Y' ready      i32 index, i32 port (its HTTP server is listening)
//     'S' submit     u64 seq, GenerationRequest         → 'A' (before any 'O' of the request)
//     'X' abort      str request_id
//     'M' metrics    u64 seq                            → 'm'
//   engine → API server
//     'C' config     str JSON: server options, engine info, tokenizer directory, deployment
//     'A' submitted  u64 seq, u8 ok, str error (EngineClient::submit's refusal)
//     'O' output     RequestOutput (to the API server that submitted the request)
//     'T' telemetry  EngineStats, u8 has_live, then LiveTotals: i32 num_layers, i32 num_experts,
//                    arr<i64> expert_tokens, i64 prompt_tokens, generation_tokens, preemptions,
//                    prefix_queries, prefix_hits, requests_finished; LatencySummary: i32
//                    num_requests, f64 ttft p50 p90 p99, f64 tpot p50 p90 p99; u8 has_ep, then EpStats:
//                    arr<i64> rank_tokens_total, f64 balancedness, i32 rearrangements, u64 count of
//                    recent ones, each i32 index, i64 step, f64 balancedness before, after, u64 layers,
//                    each i32 layer, i32 slots_changed, u64 arrivals, each i32 expert, i32 rank
//                    (every kTelemetryInterval)
//     'm' metrics    u64 seq, str: the engine process's Prometheus text
//     'F' failed     str reason: the engine cannot go on (runtime/engine_failure.h)
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/request_codec.h"
#include "runtime/rank_group.h"
#include "server/live_stats.h"

namespace moeserve::apiserver {

constexpr std::chrono::milliseconds kTelemetryInterval{250};

inline void encode_live(mp::Writer& out, const LiveTotals& totals, const LatencySummary& latency) {
  out.put<int32_t>(totals.num_layers);
  out.put<int32_t>(totals.num_experts);
  out.put_array<int64_t>(totals.expert_tokens);
  for (int64_t value : {totals.prompt_tokens, totals.generation_tokens, totals.preemptions, totals.prefix_queries,
                        totals.prefix_hits, totals.requests_finished}) {
    out.put<int64_t>(value);
  }
  out.put<int32_t>(latency.num_requests);
  for (const LatencyPercentiles* p : {&latency.ttft, &latency.tpot}) {
    out.put<double>(p->p50);
    out.put<double>(p->p90);
    out.put<double>(p->p99);
  }
}

inline void decode_live(mp::Reader& in, LiveTotals& totals, LatencySummary& latency) {
  totals.num_layers = in.get<int32_t>();
  totals.num_experts = in.get<int32_t>();
  totals.expert_tokens = in.get_array<int64_t>();
  for (int64_t* value : {&totals.prompt_tokens, &totals.generation_tokens, &totals.preemptions, &totals.prefix_queries,
                         &totals.prefix_hits, &totals.requests_finished}) {
    *value = in.get<int64_t>();
  }
  latency.num_requests = in.get<int32_t>();
  for (LatencyPercentiles* p : {&latency.ttft, &latency.tpot}) {
    p->p50 = in.get<double>();
    p->p90 = in.get<double>();
    p->p99 = in.get<double>();
  }
}

// The live page's expert-parallel panel (runtime/rank_group.h's EpStats).
inline void encode_ep(mp::Writer& out, const EpStats& ep) {
  out.put_array<int64_t>(ep.rank_tokens_total);
  out.put<double>(ep.balancedness);
  out.put<int32_t>(ep.rearrangements);
  out.put<uint64_t>(ep.recent_rearrangements.size());
  for (const EplbRearrangement& record : ep.recent_rearrangements) {
    out.put<int32_t>(record.index);
    out.put<int64_t>(record.step);
    out.put<double>(record.balancedness_before);
    out.put<double>(record.balancedness_after);
    out.put<uint64_t>(record.layers.size());
    for (const EplbLayerMove& move : record.layers) {
      out.put<int32_t>(move.layer);
      out.put<int32_t>(move.slots_changed);
      out.put<uint64_t>(move.arrivals.size());
      for (const EplbLayerMove::Arrival& arrival : move.arrivals) {
        out.put<int32_t>(arrival.expert);
        out.put<int32_t>(arrival.rank);
      }
    }
  }
}

inline EpStats decode_ep(mp::Reader& in) {
  EpStats ep;
  ep.rank_tokens_total = in.get_array<int64_t>();
  ep.balancedness = in.get<double>();
  ep.rearrangements = in.get<int32_t>();
  const uint64_t records = in.get<uint64_t>();
  if (records > EpStats::kRecentRearrangements) throw std::runtime_error("telemetry: too many EPLB records");
  for (uint64_t r = 0; r < records; ++r) {
    EplbRearrangement& record = ep.recent_rearrangements.emplace_back();
    record.index = in.get<int32_t>();
    record.step = in.get<int64_t>();
    record.balancedness_before = in.get<double>();
    record.balancedness_after = in.get<double>();
    const uint64_t layers = in.get<uint64_t>();
    for (uint64_t l = 0; l < layers; ++l) {
      EplbLayerMove& move = record.layers.emplace_back();
      move.layer = in.get<int32_t>();
      move.slots_changed = in.get<int32_t>();
      const uint64_t arrivals = in.get<uint64_t>();
      for (uint64_t a = 0; a < arrivals; ++a) {
        EplbLayerMove::Arrival& arrival = move.arrivals.emplace_back();
        arrival.expert = in.get<int32_t>();
        arrival.rank = in.get<int32_t>();
      }
    }
  }
  return ep;
}

// Messages queued by any thread for the one thread that owns a ZeroMQ socket, which polls
// fd() (an eventfd) beside the socket. `peer`: the ROUTER identity to send to; empty for a
// DEALER, or for the engine's broadcast to every API server.
class Outbox {
 public:
  struct Item {
    std::string peer;
    std::vector<char> bytes;
  };
  Outbox() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~Outbox() {
    if (fd_ >= 0) close(fd_);
  }
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void push(std::string peer, std::vector<char> bytes) {
    {
      std::lock_guard lock(mutex_);
      items_.push_back({std::move(peer), std::move(bytes)});
    }
    const uint64_t one = 1;
    (void)!write(fd_, &one, sizeof one);
  }
  std::deque<Item> take() {
    uint64_t count = 0;
    (void)!read(fd_, &count, sizeof count);
    std::lock_guard lock(mutex_);
    std::deque<Item> items;
    items.swap(items_);
    return items;
  }

 private:
  int fd_;
  std::mutex mutex_;
  std::deque<Item> items_;
};

}  // namespace moeserve::apiserver
