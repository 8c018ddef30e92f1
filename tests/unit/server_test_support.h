// Test support for the HTTP server tests: a FakeEngineClient that generates deterministic
// tokens (the prompt's ids cycled, or a scripted answer) on its own thread and detokenizes them
// with the real tokenizer, records what it was asked and what was aborted; a ServerHarness running the real
// HttpServer on 127.0.0.1 with an ephemeral port; and a small blocking HTTP client built on
// Beast for requests, raw sockets for misbehaving clients.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "engine/engine_client.h"
#include "http_client.h"
#include "metrics/metrics_registry.h"
#include "server/http_server.h"

namespace moeserve::testing {

inline const std::string kModelDir = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";

class FakeEngineClient : public EngineClient {
 public:
  // model_dir: the tokenizer (and chat template); model_config: what info() reports (none: a
  // model of no particular family).
  explicit FakeEngineClient(int max_model_len = 128, const std::string& model_dir = kModelDir,
                            const ModelConfig* model_config = nullptr) {
    auto tokenizer = Tokenizer::from_dir(model_dir);
    if (!tokenizer.ok()) throw std::runtime_error(tokenizer.error().message);
    tokenizer_ = tokenizer.value();
    info_.model_dir = model_dir;
    info_.model_config = model_config;
    if (model_config != nullptr) {
      info_.architecture = model_config->architecture;
      info_.architecture_name = model_config->architecture_name;
    }
    info_.max_model_len = max_model_len;
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeEngineClient() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  // The tokens the fake generates for `prompt`: its ids cycled, `count` of them.
  static std::vector<int32_t> expected_tokens(const std::vector<int32_t>& prompt, int count) {
    std::vector<int32_t> out;
    for (int idx = 0; idx < count; ++idx) out.push_back(prompt[idx % prompt.size()]);
    return out;
  }

  const EngineInfo& info() const override { return info_; }
  std::shared_ptr<const Tokenizer> tokenizer() const override { return tokenizer_; }

  Status submit(GenerationRequest request, OutputCallback on_output) override {
    std::lock_guard lock(mutex_);
    if (!fail_submit_message.empty()) return make_error("{}", fail_submit_message);
    for (const auto& active : active_) {
      if (active.request.request_id == request.request_id) return make_error("duplicate request id {}", request.request_id);
    }
    submitted_.push_back(request);
    Active active{.request = request,
                  .callback = std::move(on_output),
                  .detokenizer = IncrementalDetokenizer(tokenizer_, request.prompt_ids, request.stop.skip_special_tokens)};
    active_.push_back(std::move(active));
    wake_.notify_all();
    return ok_status();
  }

  void abort(const std::string& request_id) override {
    std::lock_guard lock(mutex_);
    aborted_.insert(request_id);
    pending_aborts_.push_back(request_id);
    wake_.notify_all();
  }

  EngineStats stats() const override {
    std::lock_guard lock(mutex_);
    return EngineStats{.num_running = static_cast<int>(active_.size()), .num_waiting = num_waiting,
                       .kv_cache_usage = 0.0};
  }

  std::vector<GenerationRequest> submitted() const {
    std::lock_guard lock(mutex_);
    return submitted_;
  }
  std::set<std::string> aborted() const {
    std::lock_guard lock(mutex_);
    return aborted_;
  }
  int num_active() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(active_.size());
  }
  // Waits until `request_id` was aborted (or the timeout passes).
  bool wait_aborted(const std::string& request_id, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (aborted().count(request_id) && num_active() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // Lets held requests run to completion.
  void release_holds() {
    std::lock_guard lock(mutex_);
    hold_after_tokens = -1;
    wake_.notify_all();
  }

  // Knobs (set before requests arrive).
  std::atomic<int> num_waiting{0};
  std::atomic<int> hold_after_tokens{-1};  // >= 0: stop producing after this many tokens until aborted
  std::atomic<int> step_delay_ms{0};
  std::string fail_submit_message;
  // Non-empty: every request's answer is these tokens (cycled), ended as the engine ends one: at
  // the tokenizer's EOS (unless ignore_eos) or a stop token id, whose text is not output.
  std::vector<int32_t> script;

 private:
  struct Active {
    GenerationRequest request;
    OutputCallback callback;
    IncrementalDetokenizer detokenizer;
    int generated = 0;
  };

  void loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [this] { return stopping_ || !pending_aborts_.empty() || has_work(); });
      if (stopping_) return;
      std::vector<std::pair<OutputCallback, RequestOutput>> outputs;
      for (const std::string& id : pending_aborts_) {
        for (auto it = active_.begin(); it != active_.end(); ++it) {
          if (it->request.request_id != id) continue;
          RequestOutput output;
          output.request_id = id;
          output.finished = true;
          output.finish_reason = FinishReason::kAbort;
          output.num_output_tokens = it->generated;
          outputs.emplace_back(it->callback, std::move(output));
          active_.erase(it);
          break;
        }
      }
      pending_aborts_.clear();
      for (auto it = active_.begin(); it != active_.end();) {
        if (hold_after_tokens >= 0 && it->generated >= hold_after_tokens) {
          ++it;
          continue;
        }
        outputs.emplace_back(it->callback, step(*it));
        it = outputs.back().second.finished ? active_.erase(it) : std::next(it);
      }
      lock.unlock();
      for (auto& [callback, output] : outputs) callback(std::move(output));
      if (step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms));
      lock.lock();
    }
  }

  bool has_work() const {
    for (const auto& active : active_) {
      if (hold_after_tokens < 0 || active.generated < hold_after_tokens) return true;
    }
    return false;
  }

  RequestOutput step(Active& active) {
    const auto& prompt = active.request.prompt_ids;
    const int32_t token =
        script.empty() ? prompt[active.generated % prompt.size()] : script[active.generated % script.size()];
    ++active.generated;
    const auto& stop_ids = active.request.stop.stop_token_ids;
    const bool stop_token = std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end();
    const bool stopped = !script.empty() && (stop_token || (!active.request.stop.ignore_eos &&
                                                            token == tokenizer_->eos_token_id()));
    RequestOutput output;
    output.request_id = active.request.request_id;
    output.new_token_ids = {token};
    if (!stopped) output.new_text = active.detokenizer.push(token);
    if (active.request.logprobs) {
      TokenLogprob logprob{.token_id = token, .logprob = -0.5f * active.generated, .top = {}};
      for (int rank = 0; rank < *active.request.logprobs; ++rank) {
        logprob.top.emplace_back((token + rank) % tokenizer_->vocab_size(), -0.25f * (rank + 1));
      }
      output.new_logprobs = {logprob};
    }
    output.num_prompt_tokens = static_cast<int>(prompt.size());
    output.num_output_tokens = active.generated;
    if (stopped || active.generated >= active.request.stop.max_tokens) {
      output.new_text += active.detokenizer.finish();
      output.finished = true;
      output.finish_reason = stopped ? FinishReason::kStop : FinishReason::kLength;
      if (stopped && stop_token) output.stop_reason_token = token;
    }
    return output;
  }

  EngineInfo info_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Active> active_;
  std::vector<std::string> pending_aborts_;
  std::vector<GenerationRequest> submitted_;
  std::set<std::string> aborted_;
  bool stopping_ = false;
  std::thread thread_;
};

// While alive, spdlog's default logger writes "<level> <message>" lines into memory (every
// level), for tests that assert what the server logs; the previous logger comes back after.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<Sink>()), previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const { return sink_->lines(); }
  // The lines holding `text`.
  std::vector<std::string> matching(const std::string& text) const {
    std::vector<std::string> out;
    for (const std::string& line : lines()) {
      if (line.find(text) != std::string::npos) out.push_back(line);
    }
    return out;
  }

 private:
  class Sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<std::string> lines() {
      std::lock_guard lock(mutex_);
      return lines_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      const auto level = spdlog::level::to_string_view(msg.level);
      lines_.push_back(std::string(level.data(), level.size()) + " " +
                       std::string(msg.payload.data(), msg.payload.size()));
    }
    void flush_() override {}

   private:
    std::vector<std::string> lines_;
  };

  std::shared_ptr<Sink> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// The real server on 127.0.0.1:<ephemeral> over a FakeEngineClient, run on its own thread.
class ServerHarness {
 public:
  explicit ServerHarness(ServerOptions options = {}, int max_model_len = 128, LiveSources live = {},
                         const std::string& model_dir = kModelDir, const ModelConfig* model_config = nullptr)
      : engine(max_model_len, model_dir, model_config) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.served_model_names.empty()) options.served_model_names = {"tiny", "tiny-alias"};
    options.disable_log_requests = true;
    server = std::make_unique<HttpServer>(options, engine, registry, std::move(live));
    Status status = server->start();
    if (!status.ok()) throw std::runtime_error(status.error().message);
    thread = std::thread([this] { server->run(); });
  }
  ~ServerHarness() {
    server->stop();
    thread.join();
  }

  int port() const { return server->port(); }
  HttpResult post(const std::string& path, const nlohmann::json& body, const std::map<std::string, std::string>& headers = {}) {
    HttpClient client(port());
    return client.request("POST", path, body.dump(), headers);
  }
  HttpResult get(const std::string& path, const std::map<std::string, std::string>& headers = {}) {
    HttpClient client(port());
    return client.request("GET", path, "", headers);
  }

  FakeEngineClient engine;
  MetricsRegistry registry;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
};

}  // namespace moeserve::testing
