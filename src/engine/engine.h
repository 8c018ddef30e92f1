// Engine: the step loop behind EngineClient. One thread owns the scheduler, the KV cache
// manager, the model runner and every request's sampling/detokenization state; clients hand
// requests and aborts in through a locked inbox and get outputs through their callbacks. The
// loop runs steps back to back while any work exists and sleeps otherwise. Every request ends
// with exactly one finished output, including when it is aborted or the engine stops.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/engine_client.h"
#include "engine/engine_metrics.h"
#include "engine/stop_strings.h"
#include "runtime/runner.h"
#include "runtime/sampler.h"
#include "scheduler/scheduler.h"

namespace moeserve {

struct EngineConfig {
  SchedulerConfig scheduler;  // max_model_len 0 = the model's max_position_embeddings
  bool enable_prefix_caching = true;
  uint64_t seed = 0;
  std::vector<int32_t> eos_token_ids;
};

class Engine : public EngineClient {
 public:
  // The engine's KV cache manager is sized from the runner's blocks; refused when they cannot
  // hold one sequence of max_model_len tokens.
  static Result<std::unique_ptr<Engine>> create(const std::string& model_dir, std::unique_ptr<Runner> runner,
                                                std::shared_ptr<const Tokenizer> tokenizer, EngineConfig config,
                                                EngineMetrics* metrics = nullptr);
  ~Engine() override;

  // Where the loop reports step and request metrics; call before start().
  void set_metrics(EngineMetrics* metrics) { metrics_ = metrics; }
  void start();
  // Aborts everything in flight (each gets its finished output) and joins the loop thread.
  void stop();

  const EngineInfo& info() const override { return info_; }
  std::shared_ptr<const Tokenizer> tokenizer() const override { return tokenizer_; }
  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void abort(const std::string& request_id) override;
  EngineStats stats() const override;

  int num_kv_blocks() const { return kv_manager_->num_blocks(); }
  const EngineConfig& config() const { return config_; }

 private:
  // One request's engine-thread state: sampling RNG, outputs, streaming text, timing.
  struct RequestState {
    using Clock = std::chrono::steady_clock;
    GenerationRequest request;
    OutputCallback on_output;
    SeqId seq = 0;
    std::mt19937_64 rng;
    std::vector<int32_t> output_ids;
    std::optional<LogitEditTracker> penalties;  // requests with penalties: their edits, kept up to date
    std::unique_ptr<IncrementalDetokenizer> detokenizer;
    std::unique_ptr<StopStringMatcher> stop_matcher;
    Clock::time_point arrival = Clock::now();
    Clock::time_point scheduled{};    // first scheduled (end of queueing)
    Clock::time_point first_token{};  // first token sampled
    Clock::time_point last_token{};
  };
  Engine() = default;

  void loop();
  void admit(std::unique_ptr<RequestState> state);
  void run_step();
  // How the next token is picked: params, masks and penalties, and the step's draw from the
  // request's generator (taken here, once per sampled step).
  TokenChoice next_choice(RequestState& state) const;
  // Picks the next token from the row as `choice` says (and its logprobs), then emit_token.
  void process_sample(RequestState& state, float* logits_row, const TokenChoice& choice);
  // Appends the chosen token: detokenize, check stops and limits, send the output.
  void emit_token(RequestState& state, int32_t token, RequestOutput output);
  // Ends a request: its finished output, its state and its sequence. With `deferred`, the
  // sequence is only listed there, for one Scheduler::remove of them all (a burst of aborts).
  void finish(RequestState& state, RequestOutput& output, FinishReason reason, std::vector<SeqId>* deferred = nullptr);
  void publish_stats();
  void fail_all(const std::string& message);
  void release_idle_memory();

  EngineConfig config_;
  EngineInfo info_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineMetrics* metrics_ = nullptr;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<KvCacheManager> kv_manager_;
  std::unique_ptr<Scheduler> scheduler_;

  // Engine-thread state.
  std::unordered_map<SeqId, std::unique_ptr<RequestState>> by_seq_;
  std::unordered_map<std::string, SeqId> by_id_;
  SeqId next_seq_ = 1;
  // While a step emits its tokens: the finished outputs, sent once the step's metrics are
  // recorded, so that a client that has its answer sees its step in /metrics. Null otherwise.
  std::vector<std::pair<OutputCallback, RequestOutput>>* step_finals_ = nullptr;

  // Shared with clients.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::unique_ptr<RequestState>> inbox_;
  std::vector<std::string> aborts_;
  std::unordered_map<std::string, bool> in_flight_ids_;
  EngineStats stats_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace moeserve
