// EngineFrontend: the engine process's side of --api-server-count N > 1. One thread owns a
// ZeroMQ ROUTER bound to an ipc:// endpoint; the API-server processes connect a DEALER each
// (apiserver/api_wire.h has the messages). It answers hello with the config, submits each
// request to the real EngineClient (the Engine or the DP coordinator) and routes every output to
// the API server that submitted the request, forwards aborts, answers /metrics fetches with the
// engine process's registry, pushes the engine's gauges and live-page counters every
// kTelemetryInterval, and broadcasts an engine failure. Outputs come from the engine threads
// through an Outbox, so the engine never waits on a socket; the sockets never block (no
// high-water mark: an API server drains its socket on a thread of its own).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "apiserver/api_wire.h"
#include "base/result.h"
#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "server/live_stats.h"

namespace moeserve::apiserver {

class EngineFrontend {
 public:
  // config: what an API server gets on hello. registry: rendered for the API servers' /metrics.
  // live: the engine's live-page counters (null with the web UI off); ep_stats: its expert-parallel
  // counters (empty without EP or the web UI). All must outlive this.
  EngineFrontend(EngineClient& engine, nlohmann::ordered_json config, MetricsRegistry& registry,
                 std::shared_ptr<const LiveStats> live, std::function<std::optional<EpStats>()> ep_stats);
  ~EngineFrontend();

  Status bind(const std::string& endpoint);
  void start();
  void stop();  // joins the thread; idempotent
  // Tells every API server the engine failed (thread-safe, does not block).
  void fail(const std::string& reason);
  // API servers that said ready ('Y').
  int num_ready() const { return num_ready_.load(); }

 private:
  void loop();
  void handle(const std::string& peer, const char* data, size_t size);
  void send(const std::string& peer, const std::vector<char>& bytes);
  void send_telemetry();

  EngineClient& engine_;
  std::string config_text_;
  MetricsRegistry& registry_;
  std::shared_ptr<const LiveStats> live_;
  std::function<std::optional<EpStats>()> ep_stats_;
  zmq::context_t context_{1};
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::shared_ptr<Outbox> outbox_ = std::make_shared<Outbox>();  // shared with the output callbacks
  std::vector<std::string> peers_;  // identities that said hello (the frontend thread only)
  std::atomic<int> num_ready_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace moeserve::apiserver
