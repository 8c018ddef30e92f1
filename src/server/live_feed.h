// LiveFeed: the data behind the live page at `/` — one SSE stream (GET /live) that every open
// page subscribes to. Once per interval (1 s) a timer on the io thread takes one snapshot of the
// engine (LiveStats totals, EngineClient::stats, the EP counters, the requests in flight),
// serialises it once as a `tick` event and queues the same bytes on every subscriber. Nothing of
// it runs on the engine thread, and nothing blocks: a subscriber whose connection does not keep up
// (its unsent bytes over a bound) has events dropped instead of queued, and gets a `snapshot` of
// the cumulative totals when it can take data again, so its page stays exact. Subscribers are
// held weakly: a closed connection is gone at the next tick.
//
// Events (the SSE `data:` JSON, field `type`):
//   hello    — on subscribing: the deployment, the totals at the last tick, the recent history
//              of the scalar series, the recent EPLB rearrangements.
//   tick     — every interval: what happened since the previous tick (expert_tokens is the
//              [layers][experts] delta of moeserve:expert_tokens_total), gauges, rates, latency
//              percentiles, EP rank loads, new rearrangements, the requests in flight.
//   snapshot — after dropped events: the totals at this tick (the page resets its cumulative view).
// A page's cumulative view is hello's (or the last snapshot's) totals plus every later tick's
// deltas, which equals /metrics at that tick.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "runtime/rank_group.h"
#include "server/field_reader.h"
#include "server/generation_job.h"
#include "server/live_stats.h"

namespace moeserve {

// Implemented by the HTTP session streaming /live; called on the io thread.
class LiveSubscriber {
 public:
  virtual ~LiveSubscriber() = default;
  // Queues one SSE event; false when the connection's backlog is full and the event was dropped.
  virtual bool live_event(const std::string& event) = 0;
};

// Where the feed reads from. All optional: a server without them (tests with a fake engine)
// streams the engine's gauges and the requests in flight only.
struct LiveSources {
  std::shared_ptr<const LiveStats> stats;            // the engine's counters (hooked before start)
  std::function<std::optional<EpStats>()> ep_stats;  // empty: no expert parallelism
  Json deployment = Json::object();                  // the deployment panel, as it is shown
};

class LiveFeed {
 public:
  using Clock = std::chrono::steady_clock;
  // Ticks of the scalar series a new page gets in `hello` (5 minutes at 1 s).
  static constexpr size_t kHistoryTicks = 300;
  // Requests in flight listed per tick at most (the oldest first); the count covers them all.
  static constexpr size_t kMaxListedRequests = 64;
  static constexpr double kLatencyWindowS = 60;

  // push_seconds: where the time spent in ticks goes (moeserve:live_push_seconds_total); may be null.
  LiveFeed(boost::asio::io_context& io, EngineClient& engine, LiveSources sources, double interval_s,
           Counter* push_seconds = nullptr);

  void start();  // the first tick in one interval
  void stop();   // cancels the timer and forgets every subscriber
  // Sends `hello` to the subscriber, then every tick until it is destroyed.
  void subscribe(const std::shared_ptr<LiveSubscriber>& subscriber);
  // Lists a started generation among the requests in flight until it ends.
  void track(const std::shared_ptr<const GenerationJob>& job);

  // Live subscribers as of the last tick or subscribe (readable from any thread).
  size_t num_subscribers() const { return num_subscribers_.load(std::memory_order_relaxed); }
  uint64_t ticks() const { return tick_; }
  // Events dropped so far because a subscriber's backlog was full (readable from any thread).
  uint64_t events_dropped() const { return events_dropped_.load(std::memory_order_relaxed); }

 private:
  struct Subscriber {
    std::weak_ptr<LiveSubscriber> subscriber;
    bool needs_snapshot = false;
  };
  struct Point {  // one tick of the scalar series
    double t_ms;  // unix time
    double prompt_per_s, generation_per_s, kv_cache_usage;
    int running, waiting;
  };

  void schedule();
  void tick();
  Json tick_payload(const LiveTotals& totals, const std::optional<EpStats>& ep, const EngineStats& engine,
                    double elapsed_s);
  Json totals_json(const LiveTotals& totals) const;
  Json ep_json(const EpStats& ep, bool with_recent) const;
  Json requests_json(Clock::time_point now);

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  EngineClient& engine_;
  LiveSources sources_;
  const Clock::duration interval_;
  Counter* push_seconds_;
  bool running_ = false;

  std::vector<Subscriber> subscribers_;
  std::atomic<size_t> num_subscribers_{0};
  std::atomic<uint64_t> events_dropped_{0};
  std::vector<std::weak_ptr<const GenerationJob>> jobs_;
  // The state at the last tick: the next tick's deltas start here.
  uint64_t tick_ = 0;
  Clock::time_point last_at_;
  LiveTotals last_totals_;
  std::optional<EpStats> last_ep_;
  std::deque<Point> history_;  // [<= kHistoryTicks], oldest first
};

}  // namespace moeserve
