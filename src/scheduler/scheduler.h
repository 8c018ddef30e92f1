// Scheduler: pure CPU policy, (state, budget) → StepPlan; it never touches tensors or devices.
// The invariant (vLLM v1's): there are no prefill or decode phases. Each sequence has
// num_computed tokens (KV in the cache) of num_tokens (prompt + generated); a step spends at
// most max_num_batched_tokens so computed catches up — chunked prefill, decode and prefix-cache
// hits are all that one rule. A sequence samples a token in a step exactly when the step brings
// num_computed to num_tokens. Running sequences are served first (decodes never stall behind a
// long prompt), then waiting ones FCFS while budget, max_num_seqs and free blocks allow. When
// blocks run out, the most recently admitted running sequence is preempted by recompute: its
// blocks are freed and it waits at the front of the queue with num_computed = 0.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/kv_cache_manager.h"

namespace moeserve {

struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int max_model_len = 4096;
};

enum class SeqStatus { kWaiting, kRunning };

struct Sequence {
  SeqId id = 0;
  std::vector<int32_t> tokens;  // prompt then generated
  int num_prompt_tokens = 0;
  int num_computed = 0;
  int num_cached_prompt_tokens = 0;  // prompt tokens the prefix cache supplied at admission
  int num_preemptions = 0;
  SeqStatus status = SeqStatus::kWaiting;

  int num_tokens() const { return static_cast<int>(tokens.size()); }
};

struct ScheduledSeq {
  SeqId id = 0;
  int num_computed = 0;  // before this step: the new tokens start at this position
  int num_new = 0;
  bool samples = false;  // this step computes the last token, so a new one is sampled
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;
  int num_tokens = 0;
  std::vector<SeqId> preempted;  // sequences preempted while planning this step
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, KvCacheManager& kv);

  const SchedulerConfig& config() const { return config_; }
  // Queues a new sequence (the caller validated its length against max_model_len).
  void add(SeqId id, std::vector<int32_t> prompt);
  StepPlan schedule();
  // The runner executed `plan`: computed counts advance and full blocks become shareable.
  void complete_step(const StepPlan& plan);
  // Appends a sampled token to a sequence that sampled in the last step.
  void append_token(SeqId id, int32_t token);
  // Removes a sequence (finished or aborted) wherever it is, freeing its blocks.
  void remove(SeqId id);
  // Removes many at once: one pass over the queues (remove(id) scans them for each).
  void remove(std::span<const SeqId> ids);

  const Sequence* find(SeqId id) const;
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }

 private:
  void schedule_running(StepPlan& plan, int& budget);
  void schedule_waiting(StepPlan& plan, int& budget);
  void preempt(Sequence& seq, StepPlan& plan);

  SchedulerConfig config_;
  KvCacheManager& kv_;
  std::unordered_map<SeqId, std::unique_ptr<Sequence>> seqs_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
  int64_t num_preemptions_ = 0;
};

}  // namespace moeserve
