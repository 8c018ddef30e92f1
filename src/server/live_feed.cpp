// LiveFeed: the /live SSE stream's ticks, subscribers and payloads.
#include "server/live_feed.h"

#include <algorithm>

#include "server/openai_responses.h"

namespace moeserve {
namespace {

double unix_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Json seconds_or_null(double seconds) { return seconds < 0 ? Json() : Json(seconds); }

Json percentiles_json(const LatencyPercentiles& p) {
  return Json{{"p50", seconds_or_null(p.p50)}, {"p90", seconds_or_null(p.p90)}, {"p99", seconds_or_null(p.p99)}};
}

// [layers][experts] rows of a layer-major [layers × experts] vector.
Json matrix_json(const std::vector<int64_t>& values, int num_layers, int num_experts) {
  Json rows = Json::array();
  for (int layer = 0; layer < num_layers; ++layer) {
    const auto begin = values.begin() + static_cast<std::ptrdiff_t>(layer) * num_experts;
    rows.push_back(std::vector<int64_t>(begin, begin + num_experts));
  }
  return rows;
}

// Mean over max of `loads`; null when there was no load.
Json balancedness_json(const std::vector<int64_t>& loads) {
  int64_t max = 0, sum = 0;
  for (int64_t load : loads) {
    max = std::max(max, load);
    sum += load;
  }
  if (max == 0) return Json();
  return static_cast<double>(sum) / static_cast<double>(loads.size()) / static_cast<double>(max);
}

Json rearrangement_json(const EplbRearrangement& record) {
  Json layers = Json::array();
  for (const EplbLayerMove& move : record.layers) {
    Json arrivals = Json::array();
    for (const EplbLayerMove::Arrival& arrival : move.arrivals) {
      arrivals.push_back(Json{{"expert", arrival.expert}, {"rank", arrival.rank}});
    }
    layers.push_back(Json{{"layer", move.layer}, {"slots_changed", move.slots_changed}, {"arrivals", arrivals}});
  }
  return Json{{"index", record.index},
              {"step", record.step},
              {"balancedness_before", record.balancedness_before},
              {"balancedness_after", record.balancedness_after},
              {"layers", std::move(layers)}};
}

}  // namespace

LiveFeed::LiveFeed(boost::asio::io_context& io, EngineClient& engine, LiveSources sources, double interval_s,
                   Counter* push_seconds)
    : io_(io),
      timer_(io),
      engine_(engine),
      sources_(std::move(sources)),
      interval_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s))),
      push_seconds_(push_seconds) {}

void LiveFeed::start() {
  running_ = true;
  last_at_ = Clock::now();
  if (sources_.stats) last_totals_ = sources_.stats->totals();
  if (sources_.ep_stats) last_ep_ = sources_.ep_stats();
  schedule();
}

void LiveFeed::stop() {
  running_ = false;
  timer_.cancel();
  subscribers_.clear();
  num_subscribers_ = 0;
  jobs_.clear();
}

void LiveFeed::schedule() {
  timer_.expires_at(last_at_ + interval_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && running_) tick();
  });
}

void LiveFeed::track(const std::shared_ptr<const GenerationJob>& job) {
  if (running_) jobs_.push_back(job);
}

void LiveFeed::subscribe(const std::shared_ptr<LiveSubscriber>& subscriber) {
  Json hello;
  hello["type"] = "hello";
  hello["tick"] = tick_;
  hello["interval_s"] = std::chrono::duration<double>(interval_).count();
  hello["deployment"] = sources_.deployment;
  hello["totals"] = totals_json(last_totals_);
  hello["ep"] = last_ep_ ? ep_json(*last_ep_, /*with_recent=*/true) : Json();
  Json history = Json::array();
  for (const Point& point : history_) {
    history.push_back(Json{{"t", point.t_ms},
                           {"prompt_per_s", point.prompt_per_s},
                           {"generation_per_s", point.generation_per_s},
                           {"kv_cache_usage", point.kv_cache_usage},
                           {"running", point.running},
                           {"waiting", point.waiting}});
  }
  hello["history"] = std::move(history);
  Subscriber entry{subscriber, false};
  // A hello that did not fit leaves the page without its base totals: a snapshot follows.
  if (!subscriber->live_event(sse_event(hello))) {
    entry.needs_snapshot = true;
    ++events_dropped_;
  }
  subscribers_.push_back(std::move(entry));
  num_subscribers_ = subscribers_.size();
}

Json LiveFeed::totals_json(const LiveTotals& totals) const {
  return Json{{"layers", totals.num_layers},
              {"experts", totals.num_experts},
              {"expert_tokens", matrix_json(totals.expert_tokens, totals.num_layers, totals.num_experts)},
              {"prompt_tokens", totals.prompt_tokens},
              {"generation_tokens", totals.generation_tokens},
              {"preemptions", totals.preemptions},
              {"prefix_queries", totals.prefix_queries},
              {"prefix_hits", totals.prefix_hits},
              {"requests_finished", totals.requests_finished}};
}

Json LiveFeed::ep_json(const EpStats& ep, bool with_recent) const {
  Json out{{"ranks", ep.rank_tokens_total.size()},
           {"rank_tokens_total", ep.rank_tokens_total},
           {"balancedness", ep.balancedness},
           {"rearrangements_total", ep.rearrangements}};
  if (with_recent) {
    Json recent = Json::array();
    for (const EplbRearrangement& record : ep.recent_rearrangements) recent.push_back(rearrangement_json(record));
    out["recent_rearrangements"] = std::move(recent);
  }
  return out;
}

Json LiveFeed::requests_json(Clock::time_point now) {
  std::vector<JobProgress> listed;
  for (const auto& weak : jobs_) {
    if (auto job = weak.lock()) listed.push_back(job->progress(now));
  }
  std::sort(listed.begin(), listed.end(), [](const JobProgress& a, const JobProgress& b) { return a.age_s > b.age_s; });
  Json items = Json::array();
  for (size_t idx = 0; idx < listed.size() && idx < kMaxListedRequests; ++idx) {
    const JobProgress& job = listed[idx];
    items.push_back(Json{{"id", job.id},
                         {"kind", job.kind == ApiKind::kChat ? "chat" : "completion"},
                         {"stream", job.stream},
                         {"choices", job.choices},
                         {"prompt_tokens", job.prompt_tokens},
                         {"output_tokens", job.output_tokens},
                         {"age_s", job.age_s},
                         {"ttft_s", seconds_or_null(job.ttft_s)}});
  }
  return Json{{"count", listed.size()}, {"items", std::move(items)}};
}

Json LiveFeed::tick_payload(const LiveTotals& totals, const std::optional<EpStats>& ep, const EngineStats& engine,
                            double elapsed_s) {
  Json out;
  out["type"] = "tick";
  out["tick"] = tick_ + 1;
  out["t"] = unix_ms();
  out["elapsed_s"] = elapsed_s;
  // The delta of moeserve:expert_tokens_total since the last tick ([layers][experts]).
  std::vector<int64_t> delta = totals.expert_tokens;
  if (last_totals_.expert_tokens.size() == delta.size()) {
    for (size_t idx = 0; idx < delta.size(); ++idx) delta[idx] -= last_totals_.expert_tokens[idx];
  }
  out["layers"] = totals.num_layers;
  out["experts"] = totals.num_experts;
  out["expert_tokens"] = matrix_json(delta, totals.num_layers, totals.num_experts);
  out["engine"] =
      Json{{"running", engine.num_running}, {"waiting", engine.num_waiting}, {"kv_cache_usage", engine.kv_cache_usage}};
  const int64_t prompt = totals.prompt_tokens - last_totals_.prompt_tokens;
  const int64_t generation = totals.generation_tokens - last_totals_.generation_tokens;
  const int64_t queries = totals.prefix_queries - last_totals_.prefix_queries;
  const int64_t hits = totals.prefix_hits - last_totals_.prefix_hits;
  out["tokens"] = Json{{"prompt", prompt},
                       {"generation", generation},
                       {"prompt_per_s", elapsed_s > 0 ? prompt / elapsed_s : 0.0},
                       {"generation_per_s", elapsed_s > 0 ? generation / elapsed_s : 0.0},
                       {"prompt_total", totals.prompt_tokens},
                       {"generation_total", totals.generation_tokens},
                       {"preemptions", totals.preemptions - last_totals_.preemptions},
                       {"requests_finished", totals.requests_finished - last_totals_.requests_finished}};
  out["prefix_cache"] =
      Json{{"queries", queries},
           {"hits", hits},
           {"hit_rate", queries > 0 ? Json(static_cast<double>(hits) / static_cast<double>(queries)) : Json()},
           {"hit_rate_total", totals.prefix_queries > 0 ? Json(static_cast<double>(totals.prefix_hits) /
                                                               static_cast<double>(totals.prefix_queries))
                                                        : Json()}};
  const LatencySummary latency = sources_.stats ? sources_.stats->latency(kLatencyWindowS) : LatencySummary{};
  out["latency"] = Json{{"window_s", kLatencyWindowS},
                        {"requests", latency.num_requests},
                        {"ttft_s", percentiles_json(latency.ttft)},
                        {"tpot_s", percentiles_json(latency.tpot)}};
  if (ep) {
    Json ep_out = ep_json(*ep, /*with_recent=*/false);
    // [EP ranks]: (token, expert) assignments each rank computed since the last tick.
    std::vector<int64_t> rank_delta = ep->rank_tokens_total;
    if (last_ep_ && last_ep_->rank_tokens_total.size() == rank_delta.size()) {
      for (size_t rank = 0; rank < rank_delta.size(); ++rank) rank_delta[rank] -= last_ep_->rank_tokens_total[rank];
    }
    ep_out["rank_tokens"] = rank_delta;
    ep_out["window_balancedness"] = balancedness_json(rank_delta);
    Json fresh = Json::array();
    const int seen = last_ep_ ? last_ep_->rearrangements : 0;
    for (const EplbRearrangement& record : ep->recent_rearrangements) {
      if (record.index > seen) fresh.push_back(rearrangement_json(record));
    }
    ep_out["rearrangements"] = std::move(fresh);
    out["ep"] = std::move(ep_out);
  } else {
    out["ep"] = Json();
  }
  out["requests"] = requests_json(Clock::now());
  return out;
}

void LiveFeed::tick() {
  const Clock::time_point now = Clock::now();
  const double elapsed_s = std::chrono::duration<double>(now - last_at_).count();
  const LiveTotals totals = sources_.stats ? sources_.stats->totals() : LiveTotals{};
  const std::optional<EpStats> ep = sources_.ep_stats ? sources_.ep_stats() : std::nullopt;
  std::erase_if(subscribers_, [](const Subscriber& entry) { return entry.subscriber.expired(); });
  num_subscribers_ = subscribers_.size();
  std::erase_if(jobs_, [](const std::weak_ptr<const GenerationJob>& weak) {
    auto job = weak.lock();
    return job == nullptr || !job->in_flight();
  });
  const EngineStats engine = engine_.stats();
  const double prompt_per_s = elapsed_s > 0 ? (totals.prompt_tokens - last_totals_.prompt_tokens) / elapsed_s : 0.0;
  const double generation_per_s =
      elapsed_s > 0 ? (totals.generation_tokens - last_totals_.generation_tokens) / elapsed_s : 0.0;
  history_.push_back(
      Point{unix_ms(), prompt_per_s, generation_per_s, engine.kv_cache_usage, engine.num_running, engine.num_waiting});
  if (history_.size() > kHistoryTicks) history_.pop_front();

  if (!subscribers_.empty()) {
    const std::string event = sse_event(tick_payload(totals, ep, engine, elapsed_s));
    std::string snapshot;  // built for the first subscriber that needs one
    for (Subscriber& entry : subscribers_) {
      auto subscriber = entry.subscriber.lock();
      if (subscriber == nullptr) continue;
      if (!entry.needs_snapshot) {
        if (!subscriber->live_event(event)) {
          entry.needs_snapshot = true;
          ++events_dropped_;
        }
        continue;
      }
      if (snapshot.empty()) {
        Json payload{{"type", "snapshot"}, {"tick", tick_ + 1}, {"totals", totals_json(totals)}};
        payload["ep"] = ep ? ep_json(*ep, /*with_recent=*/true) : Json();
        snapshot = sse_event(payload);
      }
      if (subscriber->live_event(snapshot)) {
        entry.needs_snapshot = false;
      } else {
        ++events_dropped_;
      }
    }
  }
  ++tick_;
  last_at_ = now;
  last_totals_ = totals;
  last_ep_ = ep;
  if (push_seconds_ != nullptr) push_seconds_->inc(std::chrono::duration<double>(Clock::now() - now).count());
  schedule();
}

}  // namespace moeserve
