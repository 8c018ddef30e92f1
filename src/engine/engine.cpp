#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <spdlog/spdlog.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif


namespace moeserve {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "error";
}

Result<std::unique_ptr<Engine>> Engine::create(const std::string& model_dir, std::unique_ptr<Runner> runner,
                                               std::shared_ptr<const Tokenizer> tokenizer, EngineConfig config,
                                               EngineMetrics* metrics) {
  if (!runner) return make_error("Engine::create: no runner");
  std::unique_ptr<Engine> engine(new Engine());
  const ModelConfig& model_config = runner->config();
  if (config.scheduler.max_model_len <= 0) config.scheduler.max_model_len = model_config.max_position_embeddings;
  const int num_blocks = runner->num_kv_blocks();
  const int block_size = runner->block_size();
  const int needed = (config.scheduler.max_model_len + block_size - 1) / block_size;
  if (num_blocks < needed) {
    return make_error("the KV cache ({} blocks of {} tokens) cannot hold one sequence of max_model_len {} "
                      "({} blocks): raise --kv-cache-memory or lower --max-model-len",
                      num_blocks, block_size, config.scheduler.max_model_len, needed);
  }
  engine->config_ = config;
  engine->tokenizer_ = std::move(tokenizer);
  engine->metrics_ = metrics;
  engine->kv_manager_ = std::make_unique<KvCacheManager>(num_blocks, block_size, config.enable_prefix_caching);
  engine->scheduler_ = std::make_unique<Scheduler>(config.scheduler, *engine->kv_manager_);
  engine->runner_ = std::move(runner);
  engine->info_ = EngineInfo{.model_dir = model_dir,
                             .model_config = &engine->runner_->config(),
                             .architecture = engine->runner_->config().architecture,
                             .architecture_name = engine->runner_->config().architecture_name,
                             .max_model_len = config.scheduler.max_model_len};
  return engine;
}

Engine::~Engine() { stop(); }

void Engine::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Engine::submit(GenerationRequest request, OutputCallback on_output) {
  const int vocab = info_.model_config->vocab_size;
  const int prompt_len = static_cast<int>(request.prompt_ids.size());
  if (prompt_len == 0) return make_error("the prompt is empty");
  for (int32_t id : request.prompt_ids) {
    if (id < 0 || id >= vocab) return make_error("token id {} is outside the vocabulary [0, {})", id, vocab);
  }
  if (request.stop.max_tokens < 1) return make_error("max_tokens must be at least 1, got {}", request.stop.max_tokens);
  if (prompt_len + request.stop.max_tokens > info_.max_model_len) {
    return make_error("this model's maximum context length is {} tokens, but the request has {} prompt tokens and "
                      "max_tokens {} ({} in total)",
                      info_.max_model_len, prompt_len, request.stop.max_tokens, prompt_len + request.stop.max_tokens);
  }
  if (request.logprobs && (*request.logprobs < 0 || *request.logprobs > 20)) {
    return make_error("logprobs must be between 0 and 20, got {}", *request.logprobs);
  }
  auto state = std::make_unique<RequestState>();
  state->on_output = std::move(on_output);
  state->request = std::move(request);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return make_error("the engine is shutting down");
    if (!in_flight_ids_.emplace(state->request.request_id, true).second) {
      return make_error("request id '{}' is already in flight", state->request.request_id);
    }
    inbox_.push_back(std::move(state));
    ++stats_.num_waiting;
  }
  wake_.notify_one();
  return ok_status();
}

void Engine::abort(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborts_.push_back(request_id);
  }
  wake_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Engine::loop() {
  while (true) {
    std::vector<std::unique_ptr<RequestState>> arrivals;
    std::vector<std::string> aborts;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || scheduler_->has_work(); });
      arrivals.swap(inbox_);
      aborts.swap(aborts_);
      stopping = stopping_;
    }
    for (auto& state : arrivals) admit(std::move(state));
    // A client that leaves aborts every sequence of its request at once (1,000 prompts x n=128:
    // 128,000): their sequences leave the scheduler's queues in one pass, not one scan each.
    std::vector<SeqId> aborted;
    for (const std::string& id : aborts) {
      const auto it = by_id_.find(id);
      if (it == by_id_.end()) continue;
      RequestOutput output;
      finish(*by_seq_.at(it->second), output, FinishReason::kAbort, &aborted);
    }
    if (!aborted.empty()) {
      scheduler_->remove(aborted);
      publish_stats();
    }
    // Aborts change the gauges even when no step follows (the last request just went away).
    if (!aborts.empty() && metrics_ != nullptr) {
      metrics_->on_step(StepMetrics{.num_running = scheduler_->num_running(),
                                    .num_waiting = scheduler_->num_waiting(),
                                    .kv_cache_usage = kv_manager_->usage()});
    }
    if (stopping) {
      fail_all("");
      return;
    }
    if (scheduler_->has_work()) {
      run_step();
      if (!scheduler_->has_work()) release_idle_memory();
    }
  }
}

// A burst of requests leaves freed memory in the allocator's per-thread arenas (request state,
// detokenizers, the server's JSON); when the last request is done, hand it back to the system
// so a server's resident memory returns to its idle level between bursts.
void Engine::release_idle_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

void Engine::admit(std::unique_ptr<RequestState> state) {
  state->seq = next_seq_++;
  const uint64_t seed = state->request.sampling.seed.value_or(config_.seed * 0x9e3779b97f4a7c15ull + state->seq);
  state->rng.seed(seed);
  const SamplingParams& sampling = state->request.sampling;
  if (repetition_penalized(sampling) || count_penalized(sampling)) {
    state->penalties.emplace(sampling, info_.model_config->vocab_size, state->request.prompt_ids);
  }
  if (tokenizer_) {
    state->detokenizer = std::make_unique<IncrementalDetokenizer>(tokenizer_, state->request.prompt_ids,
                                                                  state->request.stop.skip_special_tokens);
  }
  state->stop_matcher =
      std::make_unique<StopStringMatcher>(state->request.stop.stop, state->request.stop.include_stop_str_in_output);
  scheduler_->add(state->seq, state->request.prompt_ids);
  by_id_[state->request.request_id] = state->seq;
  by_seq_[state->seq] = std::move(state);
}

}  // namespace moeserve
