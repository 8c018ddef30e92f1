// The live page's server side over a fake engine: `/` serves the embedded, self-contained page;
// --no-webui turns it and the stream off; --api-key guards the stream and not the page; the
// /live stream's ticks carry deltas that add up to the engine's totals (hello + deltas =
// LiveStats totals, cell for cell), the requests in flight, and the EP counters; a client that
// stops reading has events dropped (its server-side backlog bounded) while another keeps every
// tick, and gets a snapshot when it reads again; a closed stream is forgotten.
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "server/live_stats.h"
#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

ServerOptions fast_ticks() {
  ServerOptions options;
  options.live_interval_s = 0.05;
  return options;
}

// One engine step's routing: [layers × experts] counts.
void feed_step(LiveStats& stats, const std::vector<int64_t>& counts, int num_experts, int generated) {
  StepMetrics step;
  step.expert_tokens = &counts;
  step.num_experts = num_experts;
  step.generation_tokens = generated;
  step.prompt_tokens = 2 * generated;
  stats.on_step(step);
}

TEST(ServerLive, PageIsEmbeddedAndSelfContained) {
  ServerHarness harness;
  HttpResult page = harness.get("/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["Content-Type"], "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<title>moeserve</title>"), std::string::npos);
  EXPECT_NE(page.body.find("id=\"heatmap\""), std::string::npos);
  // Works offline: no script, style or image from anywhere but the page itself.
  for (const char* external : {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import"}) {
    EXPECT_EQ(page.body.find(external), std::string::npos) << external;
  }
  EXPECT_GT(page.body.size(), 20000u);  // the bundled scripts are inline
  EXPECT_NE(page.body.find(R"(<meta name="moeserve-auth" content="none">)"), std::string::npos);  // no --api-key
  EXPECT_EQ(harness.post("/", json::object()).status, 405);
}

TEST(ServerLive, NoWebuiTurnsThePageAndTheStreamOff) {
  ServerOptions options;
  options.enable_webui = false;
  ServerHarness harness(options);
  for (const char* path : {"/", "/live"}) {
    HttpResult result = harness.get(path);
    EXPECT_EQ(result.status, 404) << path;
    EXPECT_NE(result.body.find("--no-webui"), std::string::npos) << result.body;
  }
  EXPECT_EQ(harness.server->live_subscribers(), 0u);
  EXPECT_EQ(harness.get("/health").status, 200);
}

TEST(ServerLive, ApiKeyGuardsTheStreamNotThePage) {
  ServerOptions options = fast_ticks();
  options.api_key = "sesame";
  ServerHarness harness(options);
  HttpResult page = harness.get("/");
  EXPECT_EQ(page.status, 200);  // the page asks for the key itself: it says that one is needed
  EXPECT_NE(page.body.find(R"(<meta name="moeserve-auth" content="api-key">)"), std::string::npos);
  EXPECT_EQ(harness.get("/live").status, 401);
  EXPECT_EQ(harness.get("/live", {{"Authorization", "Bearer wrong"}}).status, 401);
  LiveReader reader(harness.port(), "Bearer sesame");
  const std::vector<json> events = reader.events(2);
  ASSERT_GE(events.size(), 2u) << reader.raw();
  EXPECT_EQ(events[0]["type"], "hello");
  EXPECT_EQ(events[1]["type"], "tick");
}

TEST(ServerLive, TickDeltasAddUpToTheEngineTotals) {
  auto stats = std::make_shared<LiveStats>();
  LiveSources live;
  live.stats = stats;
  live.deployment = json{{"served_model_name", "tiny"}};
  constexpr int kLayers = 3, kExperts = 4;
  feed_step(*stats, std::vector<int64_t>(kLayers * kExperts, 1), kExperts, 5);  // before the page opens
  ServerHarness harness(fast_ticks(), 128, live);
  LiveReader reader(harness.port());
  ASSERT_GE(reader.events(1).size(), 1u);
  // Steps while the page watches, some between ticks, some across them.
  for (int step = 0; step < 20; ++step) {
    std::vector<int64_t> counts(kLayers * kExperts, 0);
    counts[(step * 5) % counts.size()] = step + 1;
    counts[(step * 7 + 1) % counts.size()] += 2;
    feed_step(*stats, counts, kExperts, 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(7));
  }
  const LiveTotals want = stats->totals();
  // Ticks until one shows nothing new (every step is in).
  size_t count = 2;
  for (;; ++count) {
    ASSERT_GE(reader.events(count).size(), count) << reader.raw();
    const json& last = reader.events(count)[count - 1];
    if (last["tokens"]["generation"] == 0 && count > 4) break;
  }
  const std::vector<json> events(reader.events(count).begin(), reader.events(count).begin() + count);
  const json& hello = events.front();
  ASSERT_EQ(hello["type"], "hello");
  EXPECT_EQ(hello["deployment"]["served_model_name"], "tiny");
  std::vector<int64_t> sum(kLayers * kExperts, 0);
  for (int layer = 0; layer < hello["totals"]["layers"].get<int>(); ++layer) {
    for (int expert = 0; expert < kExperts; ++expert)
      sum[layer * kExperts + expert] += hello["totals"]["expert_tokens"][layer][expert].get<int64_t>();
  }
  int64_t generation = hello["totals"]["generation_tokens"];
  int64_t previous_tick = hello["tick"];
  for (size_t idx = 1; idx < events.size(); ++idx) {
    const json& tick = events[idx];
    ASSERT_EQ(tick["type"], "tick");
    EXPECT_EQ(tick["tick"].get<int64_t>(), previous_tick + 1) << "no tick skipped";
    previous_tick = tick["tick"];
    ASSERT_EQ(tick["layers"], kLayers);
    ASSERT_EQ(tick["experts"], kExperts);
    for (int layer = 0; layer < kLayers; ++layer) {
      for (int expert = 0; expert < kExperts; ++expert)
        sum[layer * kExperts + expert] += tick["expert_tokens"][layer][expert].get<int64_t>();
    }
    generation += tick["tokens"]["generation"].get<int64_t>();
    EXPECT_TRUE(tick["ep"].is_null());
    EXPECT_GE(tick["elapsed_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(sum, want.expert_tokens);
  EXPECT_EQ(generation, want.generation_tokens);
}

TEST(ServerLive, RequestsInFlightAreListedUntilTheyEnd) {
  ServerHarness harness(fast_ticks());
  harness.engine.hold_after_tokens = 2;
  LiveReader reader(harness.port());
  // A streamed completion held after two tokens; the page lists it meanwhile.
  HttpClient client(harness.port());
  const std::string body = R"({"prompt": "In the beginning", "max_tokens": 8, "stream": true})";
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  boost::asio::write(client.socket(), boost::asio::buffer(request));
  json listed;
  for (size_t count = 2; count < 200 && listed.is_null(); ++count) {
    ASSERT_GE(reader.events(count).size(), count) << reader.raw();
    const json& items = reader.events(count)[count - 1]["requests"]["items"];
    if (!items.empty() && items[0]["output_tokens"] == 2) listed = items[0];
  }
  ASSERT_FALSE(listed.is_null());
  EXPECT_TRUE(listed["id"].get<std::string>().starts_with("cmpl-"));
  EXPECT_EQ(listed["kind"], "completion");
  EXPECT_EQ(listed["stream"], true);
  EXPECT_GT(listed["prompt_tokens"].get<int>(), 0);
  EXPECT_TRUE(listed["ttft_s"].is_number());
  harness.engine.release_holds();
  bool gone = false;
  for (size_t count = reader.size() + 1; count < 400 && !gone; ++count) {
    ASSERT_GE(reader.events(count).size(), count);
    gone = reader.events(count)[count - 1]["requests"]["count"] == 0;
  }
  EXPECT_TRUE(gone) << "the finished request left the list";
}

TEST(ServerLive, AClientThatStopsReadingIsBoundedAndResyncedWithoutStallingOthers) {
  // Large ticks (a 64 × 256 expert grid, ~100 kB each) every 20 ms fill a stalled socket fast.
  auto stats = std::make_shared<LiveStats>();
  constexpr int kLayers = 64, kExperts = 256;
  feed_step(*stats, std::vector<int64_t>(kLayers * kExperts, 123456789), kExperts, 1);
  LiveSources live;
  live.stats = stats;
  ServerOptions options;
  options.live_interval_s = 0.02;
  ServerHarness harness(options, 128, live);
  LiveReader stalled(harness.port());  // reads nothing until the server drops events for it
  LiveReader reader(harness.port());
  std::atomic<bool> stop{false};
  std::thread engine([&] {  // routed tokens keep coming, so each tick has deltas
    std::vector<int64_t> counts(kLayers * kExperts, 7);
    while (!stop) {
      feed_step(*stats, counts, kExperts, 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  // The reading client gets every tick in order while the other one reads nothing, until the
  // server has had to drop events for it (its kernel buffers and the session's 1 MiB are full).
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (harness.server->live_events_dropped() == 0 && Clock::now() < deadline) reader.events(reader.size() + 1);
  const std::vector<json>& events = reader.events(reader.size() + 20);
  stop = true;
  engine.join();
  const double stopped_ms =
      std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_GT(harness.server->live_events_dropped(), 0u) << "the stalled client's events were dropped, not queued";
  ASSERT_GT(events.size(), 20u);
  for (size_t idx = 2; idx < events.size(); ++idx) {
    ASSERT_EQ(events[idx]["type"], "tick");
    ASSERT_EQ(events[idx]["tick"].get<int64_t>(), events[idx - 1]["tick"].get<int64_t>() + 1)
        << "the reader missed none";
  }
  // The stalled client reads again: what was queued, then (it missed ticks) a snapshot of the
  // totals, then ticks again.
  size_t snapshot = 0;
  for (size_t count = 2; count < 100000 && snapshot == 0; ++count) {
    ASSERT_GE(stalled.events(count).size(), count) << "the stalled client gets events again";
    if (stalled.events(count)[count - 1]["type"] == "snapshot") snapshot = count - 1;
  }
  const std::vector<json>& late = stalled.events(snapshot + 1);
  ASSERT_GT(snapshot, 0u);
  EXPECT_GT(late[snapshot]["tick"].get<int64_t>(), late[snapshot - 1]["tick"].get<int64_t>() + 1)
      << "ticks were dropped";
  // Its view from then on is exact: the snapshot's totals plus the later ticks' deltas are the
  // engine's totals, once a tick from after the engine stopped has arrived.
  std::vector<int64_t> view(kLayers * kExperts);
  const json& totals = late[snapshot]["totals"];
  ASSERT_EQ(totals["layers"], kLayers);
  for (int layer = 0; layer < kLayers; ++layer) {
    for (int expert = 0; expert < kExperts; ++expert) {
      view[layer * kExperts + expert] = totals["expert_tokens"][layer][expert].get<int64_t>();
    }
  }
  for (size_t count = snapshot + 2;; ++count) {
    ASSERT_GE(stalled.events(count).size(), count);
    const json& tick = stalled.events(count)[count - 1];
    ASSERT_EQ(tick["type"], "tick");
    ASSERT_EQ(tick["tick"].get<int64_t>(), stalled.events(count)[count - 2]["tick"].get<int64_t>() + 1);
    for (int layer = 0; layer < kLayers; ++layer) {
      for (int expert = 0; expert < kExperts; ++expert) {
        view[layer * kExperts + expert] += tick["expert_tokens"][layer][expert].get<int64_t>();
      }
    }
    if (tick["t"].get<double>() > stopped_ms + 100) break;
  }
  EXPECT_EQ(view, stats->totals().expert_tokens);
}

TEST(ServerLive, ClosedStreamsAreForgotten) {
  ServerHarness harness(fast_ticks());
  std::vector<std::unique_ptr<LiveReader>> readers;
  for (int idx = 0; idx < 3; ++idx) {
    readers.push_back(std::make_unique<LiveReader>(harness.port()));
    ASSERT_GE(readers.back()->events(1).size(), 1u);
  }
  auto wait_for = [&](size_t want) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (harness.server->live_subscribers() != want && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return harness.server->live_subscribers();
  };
  EXPECT_EQ(wait_for(3), 3u);
  readers[0]->close();
  readers[2]->close();
  EXPECT_EQ(wait_for(1), 1u);
  EXPECT_GE(readers[1]->events(4).size(), 4u) << "the open one keeps streaming";
}

TEST(LiveStats, PercentilesOfTheRecentRequests) {
  LiveStats stats;
  for (int idx = 1; idx <= 100; ++idx) {
    RequestMetrics request;
    request.time_to_first_token_seconds = idx / 1000.0;  // 1..100 ms
    request.num_output_tokens = 11;
    request.e2e_seconds = request.time_to_first_token_seconds + 10 * (idx / 100.0);  // TPOT idx/100 s
    stats.on_request_finished(request);
  }
  RequestMetrics no_token;
  no_token.time_to_first_token_seconds = -1;
  stats.on_request_finished(no_token);
  const LatencySummary summary = stats.latency(60);
  EXPECT_EQ(summary.num_requests, 101);
  EXPECT_DOUBLE_EQ(summary.ttft.p50, 0.050);
  EXPECT_DOUBLE_EQ(summary.ttft.p90, 0.090);
  EXPECT_DOUBLE_EQ(summary.ttft.p99, 0.099);
  EXPECT_NEAR(summary.tpot.p50, 0.50, 1e-9);
  EXPECT_NEAR(summary.tpot.p99, 0.99, 1e-9);
  // Outside the window: nothing.
  const LatencySummary later = stats.latency(60, LiveStats::Clock::now() + std::chrono::seconds(120));
  EXPECT_EQ(later.num_requests, 0);
  EXPECT_EQ(later.ttft.p50, -1);
  EXPECT_EQ(stats.totals().requests_finished, 101);
}

}  // namespace
}  // namespace moeserve::testing
