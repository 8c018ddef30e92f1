// RemoteEngineClient: an API-server process's EngineClient (--api-server-count N > 1). The HTTP
// server runs unchanged on top of it; behind it, one thread owns a ZeroMQ DEALER connected to the
// engine process's EngineFrontend (apiserver/api_wire.h). submit() waits for the engine's answer
// (its refusal is the request's 400, as in one process); outputs arrive on the client thread and
// go to the request's callback; stats() and the live page's counters are the engine's last
// report (every kTelemetryInterval, so up to 250 ms old). The engine is lost when it says it
// failed ('F') or its process is gone (this process's parent changed: checked every 100 ms);
// then every later submit is refused and on_lost runs once.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "apiserver/api_wire.h"
#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "server/live_stats.h"

namespace moeserve::apiserver {

class RemoteEngineClient final : public EngineClient {
 public:
  static constexpr std::chrono::seconds kSubmitTimeout{30};
  static constexpr std::chrono::seconds kMetricsTimeout{5};

  RemoteEngineClient(std::string endpoint, int index, pid_t parent);
  ~RemoteEngineClient() override;

  // Connects and says hello; the engine's config, or an error when it does not come within
  // `timeout` (or the engine process is gone). Before start().
  Result<nlohmann::ordered_json> connect(std::chrono::milliseconds timeout);
  // Before start(): what info() and tokenizer() return, where the engine's live-page counters
  // are copied (may be null), the counter of the requests this API server submitted.
  void set_engine(EngineInfo info, std::shared_ptr<const Tokenizer> tokenizer);
  void set_live_mirror(std::shared_ptr<LiveStats> live) { live_ = std::move(live); }
  void set_submitted_counter(Counter* counter) { submitted_ = counter; }
  void on_lost(std::function<void(const std::string&)> handler) { on_lost_ = std::move(handler); }
  void start();
  void stop();

  // Tells the engine this API server listens (the engine process then says it is serving).
  void ready(int port);
  // The engine process's Prometheus text (a comment saying why when it does not answer).
  std::string fetch_metrics();
  // The engine is gone (reason); thread-safe, once.
  void lose(const std::string& reason);

  const EngineInfo& info() const override { return info_; }
  std::shared_ptr<const Tokenizer> tokenizer() const override { return tokenizer_; }
  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void abort(const std::string& request_id) override;
  EngineStats stats() const override;
  // The engine's expert-parallel counters as of its last report (none without EP or the web UI).
  std::optional<EpStats> ep_stats() const {
    std::lock_guard lock(mutex_);
    return ep_stats_;
  }

 private:
  void loop();
  void handle(const char* data, size_t size);

  std::string endpoint_;
  int index_;
  pid_t parent_;
  EngineInfo info_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<LiveStats> live_;
  Counter* submitted_ = nullptr;
  std::function<void(const std::string&)> on_lost_;

  zmq::context_t context_{1};
  zmq::socket_t dealer_{context_, zmq::socket_type::dealer};
  Outbox outbox_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::unordered_map<std::string, OutputCallback> callbacks_;  // by request id, until finished
  std::map<uint64_t, std::promise<Status>> submits_;           // by seq, until answered
  std::map<uint64_t, std::promise<std::string>> metrics_;      // by seq
  uint64_t next_seq_ = 0;
  EngineStats stats_;
  std::optional<EpStats> ep_stats_;
  std::optional<std::string> lost_;
};

}  // namespace moeserve::apiserver
