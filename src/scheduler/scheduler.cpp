#include "scheduler/scheduler.h"

#include <algorithm>
#include <unordered_set>

#include "base/check.h"

namespace moeserve {

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager& kv) : config_(config), kv_(kv) {
  MS_CHECK(config.max_num_seqs > 0 && config.max_num_batched_tokens > 0);
}

void Scheduler::add(SeqId id, std::vector<int32_t> prompt) {
  MS_CHECK(!seqs_.count(id) && !prompt.empty());
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->num_prompt_tokens = static_cast<int>(prompt.size());
  seq->tokens = std::move(prompt);
  waiting_.push_back(seq.get());
  seqs_.emplace(id, std::move(seq));
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int budget = config_.max_num_batched_tokens;
  schedule_running(plan, budget);
  if (plan.preempted.empty()) schedule_waiting(plan, budget);
  plan.num_tokens = config_.max_num_batched_tokens - budget;
  return plan;
}

void Scheduler::schedule_running(StepPlan& plan, int& budget) {
  for (size_t idx = 0; idx < running_.size() && budget > 0;) {
    Sequence& seq = *running_[idx];
    const int num_new = std::min(seq.num_tokens() - seq.num_computed, budget);
    if (num_new <= 0) {
      ++idx;
      continue;
    }
    bool scheduled = true;
    while (!kv_.allocate(seq.id, seq.num_computed + num_new)) {
      Sequence* victim = running_.back();
      preempt(*victim, plan);
      if (victim == &seq) {
        scheduled = false;
        break;
      }
    }
    if (!scheduled) break;  // seq itself was the last running sequence and got preempted
    plan.seqs.push_back({seq.id, seq.num_computed, num_new, seq.num_computed + num_new == seq.num_tokens()});
    budget -= num_new;
    ++idx;
  }
}

void Scheduler::schedule_waiting(StepPlan& plan, int& budget) {
  while (!waiting_.empty() && budget > 0 && static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Sequence& seq = *waiting_.front();
    const PrefixHit hit = kv_.find_prefix(seq.tokens);
    const int num_new = std::min(seq.num_tokens() - hit.num_tokens, budget);
    if (!kv_.allocate(seq.id, hit.num_tokens + num_new, &hit)) break;
    waiting_.pop_front();
    seq.status = SeqStatus::kRunning;
    seq.num_computed = hit.num_tokens;
    if (seq.num_preemptions == 0) seq.num_cached_prompt_tokens = hit.num_tokens;
    running_.push_back(&seq);
    plan.seqs.push_back({seq.id, seq.num_computed, num_new, seq.num_computed + num_new == seq.num_tokens()});
    budget -= num_new;
  }
}

void Scheduler::preempt(Sequence& seq, StepPlan& plan) {
  running_.erase(std::find(running_.begin(), running_.end(), &seq));
  kv_.free(seq.id);
  seq.num_computed = 0;
  seq.status = SeqStatus::kWaiting;
  ++seq.num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(&seq);
  plan.preempted.push_back(seq.id);
  // A sequence already planned this step cannot be preempted: schedule_running only preempts
  // from the back, and plans front to back, so the victim was not planned yet.
}

void Scheduler::complete_step(const StepPlan& plan) {
  for (const ScheduledSeq& scheduled : plan.seqs) {
    auto it = seqs_.find(scheduled.id);
    if (it == seqs_.end()) continue;  // removed while the step ran
    Sequence& seq = *it->second;
    seq.num_computed = scheduled.num_computed + scheduled.num_new;
    kv_.commit_computed(seq.id, seq.tokens, seq.num_computed);
  }
}

void Scheduler::append_token(SeqId id, int32_t token) {
  auto it = seqs_.find(id);
  MS_CHECK(it != seqs_.end());
  it->second->tokens.push_back(token);
}

void Scheduler::remove(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Sequence* seq = it->second.get();
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
  kv_.free(id);
  seqs_.erase(it);
}

void Scheduler::remove(std::span<const SeqId> ids) {
  std::unordered_set<const Sequence*> gone;
  for (SeqId id : ids) {
    auto it = seqs_.find(id);
    if (it != seqs_.end()) gone.insert(it->second.get());
  }
  if (gone.empty()) return;
  const auto is_gone = [&](const Sequence* seq) { return gone.count(seq) != 0; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), is_gone), running_.end());
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), is_gone), waiting_.end());
  for (SeqId id : ids) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;
    kv_.free(id);
    seqs_.erase(it);
  }
}

const Sequence* Scheduler::find(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : it->second.get();
}

}  // namespace moeserve
