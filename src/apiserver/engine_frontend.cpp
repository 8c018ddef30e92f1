// EngineFrontend: the engine process's ROUTER for the API-server processes.
#include "apiserver/engine_frontend.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

namespace moeserve::apiserver {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

EngineFrontend::EngineFrontend(EngineClient& engine, nlohmann::ordered_json config, MetricsRegistry& registry,
                               std::shared_ptr<const LiveStats> live, std::function<std::optional<EpStats>()> ep_stats)
    : engine_(engine),
      config_text_(config.dump()),
      registry_(registry),
      live_(std::move(live)),
      ep_stats_(std::move(ep_stats)) {
  router_.set(zmq::sockopt::linger, 0);
  router_.set(zmq::sockopt::sndhwm, 0);
  router_.set(zmq::sockopt::rcvhwm, 0);
}

EngineFrontend::~EngineFrontend() { stop(); }

Status EngineFrontend::bind(const std::string& endpoint) {
  if (!outbox_->ok()) return make_error("--api-server-count: eventfd: {}", strerror(errno));
  try {
    router_.bind(endpoint);
  } catch (const zmq::error_t& error) {
    return make_error("--api-server-count: cannot bind the engine's endpoint {}: {}", endpoint, error.what());
  }
  return ok_status();
}

void EngineFrontend::start() {
  thread_ = std::thread([this] { loop(); });
}

void EngineFrontend::stop() {
  stopping_ = true;
  outbox_->push("", {});  // wakes the loop
  if (thread_.joinable()) thread_.join();
}

void EngineFrontend::fail(const std::string& reason) {
  mp::Writer out('F');
  codec::put_string(out, reason);
  outbox_->push("", std::move(out.bytes()));
}

void EngineFrontend::send(const std::string& peer, const std::vector<char>& bytes) {
  try {
    (void)router_.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    (void)router_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& error) {
    spdlog::warn("--api-server-count: sending to an API server: {}", error.what());
  }
}

void EngineFrontend::send_telemetry() {
  if (peers_.empty()) return;
  mp::Writer out('T');
  codec::encode(out, engine_.stats());
  out.put<uint8_t>(live_ != nullptr);
  if (live_) encode_live(out, live_->totals(), live_->latency(60));
  const std::optional<EpStats> ep = ep_stats_ ? ep_stats_() : std::nullopt;
  out.put<uint8_t>(ep.has_value());
  if (ep) encode_ep(out, *ep);
  for (const std::string& peer : peers_) send(peer, out.bytes());
}

void EngineFrontend::loop() {
  auto next_telemetry = Clock::now();
  while (!stopping_) {
    zmq::pollitem_t items[] = {{static_cast<void*>(router_), 0, ZMQ_POLLIN, 0},
                               {nullptr, outbox_->fd(), ZMQ_POLLIN, 0}};
    const auto wait = std::max(std::chrono::milliseconds(0),
                               std::chrono::duration_cast<std::chrono::milliseconds>(next_telemetry - Clock::now()));
    try {
      zmq::poll(items, 2, wait);
    } catch (const zmq::error_t& error) {
      if (error.num() == EINTR) continue;
      throw;
    }
    // Requests first: a submit's answer goes out before any output of its request.
    for (int budget = 256; budget > 0; --budget) {
      zmq::message_t peer, body;
      if (!router_.recv(peer, zmq::recv_flags::dontwait)) break;
      if (!peer.more() || !router_.recv(body, zmq::recv_flags::dontwait)) continue;
      while (body.more()) {  // not ours: drop the rest
        zmq::message_t rest;
        if (!router_.recv(rest, zmq::recv_flags::dontwait)) break;
      }
      handle(peer.to_string(), static_cast<const char*>(body.data()), body.size());
    }
    for (Outbox::Item& item : outbox_->take()) {
      if (item.bytes.empty()) continue;  // a wake-up
      if (!item.peer.empty()) {
        send(item.peer, item.bytes);
      } else {
        for (const std::string& peer : peers_) send(peer, item.bytes);
      }
    }
    if (Clock::now() >= next_telemetry) {
      send_telemetry();
      next_telemetry = Clock::now() + kTelemetryInterval;
    }
  }
}

void EngineFrontend::handle(const std::string& peer, const char* data, size_t size) {
  if (size == 0) return;
  mp::Reader in(data + 1, size - 1);
  try {
    switch (data[0]) {
      case 'H': {
        const int index = in.get<int32_t>();
        if (std::find(peers_.begin(), peers_.end(), peer) == peers_.end()) peers_.push_back(peer);
        spdlog::debug("API server {} connected to the engine", index);
        mp::Writer out('C');
        codec::put_string(out, config_text_);
        send(peer, out.bytes());
        return;
      }
      case 'Y': {
        const int index = in.get<int32_t>();
        const int port = in.get<int32_t>();
        spdlog::debug("API server {} listens on port {}", index, port);
        ++num_ready_;
        return;
      }
      case 'S': {
        const uint64_t seq = in.get<uint64_t>();
        GenerationRequest request = codec::decode_request(in);
        std::shared_ptr<Outbox> outbox = outbox_;
        // The engine's threads call this: it only queues the encoded output for this thread.
        const Status status = engine_.submit(std::move(request), [outbox, peer](RequestOutput output) {
          mp::Writer out('O');
          codec::encode(out, output);
          outbox->push(peer, std::move(out.bytes()));
        });
        mp::Writer out('A');
        out.put<uint64_t>(seq);
        out.put<uint8_t>(status.ok());
        codec::put_string(out, status.ok() ? std::string() : status.error().message);
        send(peer, out.bytes());
        return;
      }
      case 'X':
        engine_.abort(codec::get_string(in));
        return;
      case 'M': {
        const uint64_t seq = in.get<uint64_t>();
        mp::Writer out('m');
        out.put<uint64_t>(seq);
        codec::put_string(out, registry_.render());
        send(peer, out.bytes());
        return;
      }
      default:
        spdlog::warn("--api-server-count: an API server sent an unknown message '{}'", data[0]);
    }
  } catch (const std::runtime_error& error) {
    spdlog::warn("--api-server-count: a malformed message '{}' from an API server: {}", data[0], error.what());
  }
}

}  // namespace moeserve::apiserver
