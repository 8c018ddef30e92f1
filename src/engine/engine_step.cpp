// The engine's per-step work: schedule, run the model, then sample, detokenize, check stops
// and emit each sampling request's output.
#include <algorithm>
#include <chrono>

#include "engine/engine.h"
#include "runtime/logprobs.h"

namespace moeserve {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
bool contains(const std::vector<int32_t>& ids, int32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

}  // namespace

void Engine::run_step() {
  const int64_t queries_before = kv_manager_->prefix_queries();
  const int64_t hits_before = kv_manager_->prefix_hits();
  const int64_t preemptions_before = scheduler_->num_preemptions();
  const StepPlan plan = scheduler_->schedule();
  if (plan.empty()) {
    // Nothing fits even with every running sequence preempted: cannot happen while the pool
    // holds one max_model_len sequence (checked at create), but never spin on it.
    fail_all("the KV cache cannot hold the waiting request");
    return;
  }
  std::vector<RunnerSeq> seqs;
  seqs.reserve(plan.seqs.size());
  // Each sampling sequence's choice (its draw taken now, in step order). A runner that picks
  // tokens gets it unless the engine needs the logits row itself (logprobs the runner does not
  // compute: over edited rows, or more than it offers).
  std::vector<TokenChoice> choices(plan.seqs.size());
  int64_t prompt_tokens = 0;
  const bool runner_picks = runner_->picks_tokens();
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& scheduled = plan.seqs[i];
    const Sequence& seq = *scheduler_->find(scheduled.id);
    RequestState& state = *by_seq_.at(scheduled.id);
    if (scheduled.samples) choices[i] = next_choice(state);
    const std::optional<int>& logprobs = state.request.logprobs;
    const bool runner_chooses =
        scheduled.samples && runner_picks &&
        (!logprobs || (choices[i].edits.empty() && *logprobs <= runner_->max_picked_logprobs()));
    seqs.push_back(RunnerSeq{.tokens = seq.tokens,
                             .num_computed = scheduled.num_computed,
                             .num_new = scheduled.num_new,
                             .samples = scheduled.samples,
                             .choice = runner_chooses ? &choices[i] : nullptr,
                             .block_table = kv_manager_->block_table(scheduled.id)});
    prompt_tokens += std::max(0, std::min(seq.num_prompt_tokens, scheduled.num_computed + scheduled.num_new) -
                                     scheduled.num_computed);
    if (state.scheduled == Clock::time_point{}) state.scheduled = Clock::now();
  }
  runner_->reset_expert_load();
  Tensor logits = runner_->execute(seqs);
  scheduler_->complete_step(plan);

  const int vocab = info_.model_config->vocab_size;
  std::vector<std::pair<OutputCallback, RequestOutput>> finals;
  step_finals_ = &finals;
  const std::span<const int32_t> picked = runner_->picked_tokens();
  const std::span<const TokenLogprob> picked_logprobs = runner_->picked_logprobs();
  int row = 0;
  int64_t generated = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    if (!plan.seqs[i].samples) continue;
    RequestState& state = *by_seq_.at(plan.seqs[i].id);
    if (seqs[i].choice != nullptr) {
      RequestOutput output;
      if (seqs[i].choice->logprobs >= 0) output.new_logprobs.push_back(picked_logprobs[row]);
      emit_token(state, picked[row], std::move(output));
    } else {
      process_sample(state, logits.f32() + static_cast<int64_t>(row) * vocab, choices[i]);
    }
    ++row;
    ++generated;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.num_running = scheduler_->num_running();
    stats_.num_waiting = scheduler_->num_waiting() + static_cast<int>(inbox_.size());
    stats_.kv_cache_usage = kv_manager_->usage();
  }
  if (metrics_ != nullptr) {
    const ExpertLoad& load = runner_->expert_load();
    metrics_->on_step(StepMetrics{.steps = 1,
                                  .num_running = scheduler_->num_running(),
                                  .num_waiting = scheduler_->num_waiting(),
                                  .kv_cache_usage = kv_manager_->usage(),
                                  .prompt_tokens = prompt_tokens,
                                  .generation_tokens = generated,
                                  .preemptions = scheduler_->num_preemptions() - preemptions_before,
                                  .prefix_queries = kv_manager_->prefix_queries() - queries_before,
                                  .prefix_hits = kv_manager_->prefix_hits() - hits_before,
                                  .expert_tokens = &load.counts,
                                  .num_experts = load.num_experts});
  }
  step_finals_ = nullptr;
  for (auto& [callback, output] : finals) callback(std::move(output));
}

TokenChoice Engine::next_choice(RequestState& state) const {
  const GenerationRequest& request = state.request;
  TokenChoice choice;
  choice.params = request.sampling;
  std::vector<int32_t> masked;  // below min_tokens: no EOS, no stop token
  if (static_cast<int>(state.output_ids.size()) < request.stop.min_tokens) {
    masked = config_.eos_token_ids;
    masked.insert(masked.end(), request.stop.stop_token_ids.begin(), request.stop.stop_token_ids.end());
  }
  choice.edits = state.penalties ? state.penalties->edits(masked)
                                 : logit_edits(request.sampling, info_.model_config->vocab_size, {}, {}, masked);
  if (!choice.greedy()) choice.uniform = draw_uniform(state.rng);
  choice.logprobs = request.logprobs.value_or(-1);
  return choice;
}

void Engine::process_sample(RequestState& state, float* logits_row, const TokenChoice& choice) {
  const GenerationRequest& request = state.request;
  std::span<float> logits(logits_row, info_.model_config->vocab_size);
  RequestOutput output;
  std::vector<float> raw;  // logprobs are of the raw logits, before masks and penalties
  if (request.logprobs) raw.assign(logits.begin(), logits.end());
  apply_edits(logits, choice.params, choice.edits);
  const int32_t token = sample_with_uniform(logits, choice.params, choice.uniform);
  if (request.logprobs) output.new_logprobs.push_back(compute_logprobs(raw, token, *request.logprobs));
  emit_token(state, token, std::move(output));
}

void Engine::emit_token(RequestState& state, int32_t token, RequestOutput output) {
  const GenerationRequest& request = state.request;
  const bool below_min = static_cast<int>(state.output_ids.size()) < request.stop.min_tokens;
  const Clock::time_point now = Clock::now();
  if (state.first_token == Clock::time_point{}) {
    state.first_token = now;
  } else if (metrics_ != nullptr) {
    metrics_->on_inter_token_latency(seconds_between(state.last_token, now));
  }
  state.last_token = now;

  state.output_ids.push_back(token);
  if (state.penalties) state.penalties->add_output(token);
  scheduler_->append_token(state.seq, token);
  output.new_token_ids.push_back(token);

  const bool is_eos = !request.stop.ignore_eos && contains(config_.eos_token_ids, token);
  const bool is_stop_token = contains(request.stop.stop_token_ids, token);
  const bool stop_by_token = (is_eos || is_stop_token) && !below_min;
  std::string text;
  if (state.detokenizer && (!stop_by_token || request.stop.include_stop_str_in_output)) {
    text = state.detokenizer->push(token);
  }
  std::optional<FinishReason> reason;
  if (stop_by_token) {
    reason = FinishReason::kStop;
    if (is_stop_token) output.stop_reason_token = token;
  }
  const int total = static_cast<int>(state.request.prompt_ids.size() + state.output_ids.size());
  if (!reason && (static_cast<int>(state.output_ids.size()) >= request.stop.max_tokens || total >= info_.max_model_len)) {
    reason = FinishReason::kLength;
  }
  if (reason && state.detokenizer) text += state.detokenizer->finish();
  StopStringMatcher::Step step = state.stop_matcher->push(text);
  if (step.stopped && !below_min) {
    reason = FinishReason::kStop;
    output.stop_reason_text = step.matched;
    output.stop_reason_token.reset();
  } else if (reason) {
    step.emit += state.stop_matcher->flush();
  }
  output.new_text = std::move(step.emit);
  if (reason) {
    finish(state, output, *reason);
    return;
  }
  output.request_id = request.request_id;
  output.num_prompt_tokens = static_cast<int>(request.prompt_ids.size());
  output.num_output_tokens = static_cast<int>(state.output_ids.size());
  if (const Sequence* seq = scheduler_->find(state.seq)) output.num_cached_tokens = seq->num_cached_prompt_tokens;
  state.on_output(std::move(output));
}

void Engine::finish(RequestState& state, RequestOutput& output, FinishReason reason, std::vector<SeqId>* deferred) {
  output.request_id = state.request.request_id;
  output.finished = true;
  output.finish_reason = reason;
  output.num_prompt_tokens = static_cast<int>(state.request.prompt_ids.size());
  output.num_output_tokens = static_cast<int>(state.output_ids.size());
  if (const Sequence* seq = scheduler_->find(state.seq)) output.num_cached_tokens = seq->num_cached_prompt_tokens;
  if (metrics_ != nullptr) {
    const Clock::time_point now = Clock::now();
    metrics_->on_request_finished(RequestMetrics{
        .finish_reason = reason,
        .num_prompt_tokens = output.num_prompt_tokens,
        .num_output_tokens = output.num_output_tokens,
        .queue_seconds = state.scheduled == Clock::time_point{} ? seconds_between(state.arrival, now)
                                                                 : seconds_between(state.arrival, state.scheduled),
        .time_to_first_token_seconds = state.first_token == Clock::time_point{}
                                           ? -1.0
                                           : seconds_between(state.arrival, state.first_token),
        .e2e_seconds = seconds_between(state.arrival, now)});
  }
  const SeqId seq = state.seq;
  const std::string id = state.request.request_id;
  OutputCallback callback = std::move(state.on_output);
  if (deferred != nullptr) {
    deferred->push_back(seq);
  } else {
    scheduler_->remove(seq);
  }
  by_id_.erase(id);
  by_seq_.erase(seq);  // destroys `state`
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_ids_.erase(id);
  }
  if (deferred == nullptr) publish_stats();
  if (step_finals_ != nullptr) {
    step_finals_->emplace_back(std::move(callback), std::move(output));
  } else {
    callback(std::move(output));
  }
}

void Engine::publish_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.num_running = scheduler_->num_running();
  stats_.num_waiting = scheduler_->num_waiting() + static_cast<int>(inbox_.size());
  stats_.kv_cache_usage = kv_manager_->usage();
}

void Engine::fail_all(const std::string& message) {
  std::vector<SeqId> seqs;
  for (const auto& [seq, state] : by_seq_) seqs.push_back(seq);
  std::sort(seqs.begin(), seqs.end());
  for (SeqId seq : seqs) {
    RequestOutput output;
    output.error = message;
    finish(*by_seq_.at(seq), output, message.empty() ? FinishReason::kAbort : FinishReason::kError);
  }
}

}  // namespace moeserve
