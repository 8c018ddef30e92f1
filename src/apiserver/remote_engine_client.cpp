// RemoteEngineClient: the API-server process's DEALER to the engine process.
#include "apiserver/remote_engine_client.h"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace moeserve::apiserver {

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kPoll{100};
}  // namespace

RemoteEngineClient::RemoteEngineClient(std::string endpoint, int index, pid_t parent)
    : endpoint_(std::move(endpoint)), index_(index), parent_(parent) {
  dealer_.set(zmq::sockopt::linger, 0);
  dealer_.set(zmq::sockopt::sndhwm, 0);
  dealer_.set(zmq::sockopt::rcvhwm, 0);
}

RemoteEngineClient::~RemoteEngineClient() { stop(); }

Result<nlohmann::ordered_json> RemoteEngineClient::connect(std::chrono::milliseconds timeout) {
  try {
    dealer_.connect(endpoint_);
    mp::Writer hello('H');
    hello.put<int32_t>(index_);
    (void)dealer_.send(zmq::buffer(hello.bytes()), zmq::send_flags::none);
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (getppid() != parent_) return make_error("the engine process exited before it sent its config");
      zmq::pollitem_t item{static_cast<void*>(dealer_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, kPoll);
      zmq::message_t message;
      if (!dealer_.recv(message, zmq::recv_flags::dontwait)) continue;
      const char* data = static_cast<const char*>(message.data());
      if (message.size() == 0 || data[0] != 'C') continue;  // telemetry may come first
      mp::Reader in(data + 1, message.size() - 1);
      return nlohmann::ordered_json::parse(codec::get_string(in));
    }
  } catch (const std::exception& error) {
    return make_error("connecting to the engine at {}: {}", endpoint_, error.what());
  }
  return make_error("the engine at {} did not answer within {} ms", endpoint_, timeout.count());
}

void RemoteEngineClient::set_engine(EngineInfo info, std::shared_ptr<const Tokenizer> tokenizer) {
  info_ = std::move(info);
  tokenizer_ = std::move(tokenizer);
}

void RemoteEngineClient::start() {
  thread_ = std::thread([this] { loop(); });
}

void RemoteEngineClient::stop() {
  stopping_ = true;
  outbox_.push("", {});
  if (thread_.joinable()) thread_.join();
}

void RemoteEngineClient::ready(int port) {
  mp::Writer out('Y');
  out.put<int32_t>(index_);
  out.put<int32_t>(port);
  outbox_.push("", std::move(out.bytes()));
}

void RemoteEngineClient::lose(const std::string& reason) {
  std::map<uint64_t, std::promise<Status>> submits;
  std::map<uint64_t, std::promise<std::string>> metrics;
  std::unordered_map<std::string, OutputCallback> callbacks;
  {
    std::lock_guard lock(mutex_);
    if (lost_) return;
    lost_ = reason;
    submits.swap(submits_);
    metrics.swap(metrics_);
    callbacks.swap(callbacks_);  // their requests end through the server's 503s
  }
  for (auto& [seq, promise] : submits) promise.set_value(make_error("the engine failed: {}", reason));
  for (auto& [seq, promise] : metrics) promise.set_value(fmt::format("# the engine failed: {}\n", reason));
  if (on_lost_) on_lost_(reason);
}

Status RemoteEngineClient::submit(GenerationRequest request, OutputCallback on_output) {
  std::future<Status> answer;
  uint64_t seq = 0;
  const std::string id = request.request_id;
  {
    std::lock_guard lock(mutex_);
    if (lost_) return make_error("the engine failed: {}", *lost_);
    if (callbacks_.count(id) != 0) return make_error("request id '{}' is already in flight", id);
    callbacks_.emplace(id, std::move(on_output));
    seq = next_seq_++;
    answer = submits_[seq].get_future();
  }
  mp::Writer out('S');
  out.put<uint64_t>(seq);
  codec::encode(out, request);
  outbox_.push("", std::move(out.bytes()));
  Status status = make_error("the engine did not take the request within {} s", kSubmitTimeout.count());
  if (answer.wait_for(kSubmitTimeout) == std::future_status::ready) status = answer.get();
  if (!status.ok()) {
    std::lock_guard lock(mutex_);
    submits_.erase(seq);
    callbacks_.erase(id);
    return status;
  }
  if (submitted_) submitted_->inc();
  return status;
}

void RemoteEngineClient::abort(const std::string& request_id) {
  mp::Writer out('X');
  codec::put_string(out, request_id);
  outbox_.push("", std::move(out.bytes()));
}

EngineStats RemoteEngineClient::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string RemoteEngineClient::fetch_metrics() {
  std::future<std::string> answer;
  uint64_t seq = 0;
  {
    std::lock_guard lock(mutex_);
    if (lost_) return fmt::format("# the engine failed: {}\n", *lost_);
    seq = next_seq_++;
    answer = metrics_[seq].get_future();
  }
  mp::Writer out('M');
  out.put<uint64_t>(seq);
  outbox_.push("", std::move(out.bytes()));
  if (answer.wait_for(kMetricsTimeout) == std::future_status::ready) return answer.get();
  std::lock_guard lock(mutex_);
  metrics_.erase(seq);
  return fmt::format("# the engine process did not send its metrics within {} s\n", kMetricsTimeout.count());
}

void RemoteEngineClient::loop() {
  while (!stopping_) {
    zmq::pollitem_t items[] = {{static_cast<void*>(dealer_), 0, ZMQ_POLLIN, 0}, {nullptr, outbox_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, kPoll);
      for (int budget = 256; budget > 0; --budget) {
        zmq::message_t message;
        if (!dealer_.recv(message, zmq::recv_flags::dontwait)) break;
        handle(static_cast<const char*>(message.data()), message.size());
      }
      for (Outbox::Item& item : outbox_.take()) {
        if (!item.bytes.empty()) (void)dealer_.send(zmq::buffer(item.bytes), zmq::send_flags::dontwait);
      }
    } catch (const zmq::error_t& error) {
      if (error.num() != EINTR) spdlog::warn("API server {}: the engine channel: {}", index_, error.what());
    }
    if (getppid() != parent_) lose(fmt::format("the engine process (pid {}) exited", parent_));
  }
}

void RemoteEngineClient::handle(const char* data, size_t size) {
  if (size == 0) return;
  mp::Reader in(data + 1, size - 1);
  try {
    switch (data[0]) {
      case 'A': {
        const uint64_t seq = in.get<uint64_t>();
        const bool ok = in.get<uint8_t>() != 0;
        const std::string error = codec::get_string(in);
        std::lock_guard lock(mutex_);
        auto it = submits_.find(seq);
        if (it == submits_.end()) return;  // timed out already
        it->second.set_value(ok ? ok_status() : Status(make_error("{}", error)));
        submits_.erase(it);
        return;
      }
      case 'O': {
        RequestOutput output = codec::decode_output(in);
        OutputCallback callback;
        {
          std::lock_guard lock(mutex_);
          auto it = callbacks_.find(output.request_id);
          if (it == callbacks_.end()) return;
          if (output.finished) {
            callback = std::move(it->second);
            callbacks_.erase(it);
          } else {
            callback = it->second;
          }
        }
        callback(std::move(output));
        return;
      }
      case 'T': {
        const EngineStats stats = codec::decode_stats(in);
        if (in.get<uint8_t>() != 0) {
          LiveTotals totals;
          LatencySummary latency;
          decode_live(in, totals, latency);
          if (live_) live_->mirror(std::move(totals), latency);
        }
        std::optional<EpStats> ep;
        if (in.get<uint8_t>() != 0) ep = decode_ep(in);
        std::lock_guard lock(mutex_);
        stats_ = stats;
        ep_stats_ = std::move(ep);
        return;
      }
      case 'm': {
        const uint64_t seq = in.get<uint64_t>();
        std::string text = codec::get_string(in);
        std::lock_guard lock(mutex_);
        auto it = metrics_.find(seq);
        if (it == metrics_.end()) return;
        it->second.set_value(std::move(text));
        metrics_.erase(it);
        return;
      }
      case 'F':
        lose(codec::get_string(in));
        return;
      default:
        spdlog::warn("API server {}: the engine sent an unknown message '{}'", index_, data[0]);
    }
  } catch (const std::runtime_error& error) {
    spdlog::warn("API server {}: a malformed message '{}' from the engine: {}", index_, data[0], error.what());
  }
}

}  // namespace moeserve::apiserver
