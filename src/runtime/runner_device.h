// RunnerDevice: a backend as the one runner (runtime/model_runner.h) drives it — one rank's model
// in that backend's memory, its paged KV cache there, and the moves of one forward pass: the
// packed step words in, the model run (a captured graph where the backend has one), the tokens
// picked and the logits rows the engine reads copied out. The CPU's is runtime/cpu_runner.h's
// CpuDevice, the CUDA one backend/cuda/cuda_runner_device.h's. What is the same on every backend
// (cutting a step into passes, packing them, the profile run, KV sizing, expert counts, the EP
// lockstep) is the runner's.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "model/config.h"
#include "model/decoder_loop.h"
#include "model/parallel.h"
#include "runtime/expert_slots.h"
#include "runtime/logprobs.h"
#include "runtime/runner_seq.h"
#include "runtime/step_packing.h"

namespace moeserve {

// One sequence's rows inside one forward pass.
struct PassPiece {
  const RunnerSeq* seq = nullptr;
  int begin = 0;  // first row's position
  int count = 0;
  bool logits_all = false;
  bool logits_last = false;
  // Picks the token of its (last) row: that row need not come back. Null: the row's argmax, and
  // the row comes back.
  const TokenChoice* choice = nullptr;
  int logit_rows() const { return logits_all ? count : (logits_last ? 1 : 0); }
};

// Where a pass's results go. host_logits null: nothing is picked or copied (the profile run).
struct PassOutput {
  float* host_logits = nullptr;            // [pass logit rows, vocab]: every row without a choice
  std::vector<int32_t>* tokens = nullptr;  // appended: each logit row's token
  // appended: one per logit row (set for rows whose choice asked for logprobs)
  std::vector<TokenLogprob>* logprobs = nullptr;
};

// A device's memory, for sizing the KV cache from --gpu-memory-utilization.
struct DeviceMemory {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};

class RunnerDevice {
 public:
  virtual ~RunnerDevice() = default;

  // The rank's model.
  virtual const ModelConfig& config() const = 0;
  virtual const ShardSpec& shard() const = 0;
  virtual int kv_entry_size() const = 0;  // elements per token per layer in this rank's KV cache
  // Bytes of one KV cache element: float32, or 1 where the cache holds e4m3 (KvLayers::fp8).
  virtual int kv_element_bytes() const { return sizeof(float); }
  virtual size_t weight_bytes() const = 0;
  virtual ExpertSlots& expert_slots() = 0;
  // The rows of a query tile pack_step lays out for the prefill attention (1: none).
  virtual int query_tile_rows() const = 0;
  // The most top logprobs picked with a token (choices without edits).
  virtual int max_picked_logprobs() const = 0;

  // The paged KV cache: `blocks` blocks of `block_size` tokens, replacing the one before (0:
  // none). kv_entry_size() elements of kv_element_bytes() per token per layer.
  virtual Status allocate_kv_cache(int blocks, int block_size) = 0;
  virtual size_t kv_bytes() const = 0;
  // Which of its host's GPUs it is (0 for host memory).
  virtual int device_index() const { return 0; }
  // The device's memory now (after synchronize()); nullopt where the KV cache is sized by the
  // caller instead (host memory).
  virtual std::optional<DeviceMemory> memory() const { return std::nullopt; }
  // The step workspace for passes of up to max_tokens rows and max_logit_rows logit rows, where
  // the device allocates it up front (the CPU's grows with the largest pass so far).
  virtual Status reserve_workspace(int max_tokens, int max_logit_rows) { return ok_status(); }
  // The step workspace: its capacity and the most a pass has used.
  virtual size_t workspace_capacity() const = 0;
  virtual size_t workspace_peak() const = 0;

  // The counters a pass adds its routing to: `host`'s arrays (here), or the device's own for the
  // per-expert counts (expert parallelism always counts on the host: the dispatch plans there).
  virtual LoadCounters load_counters(ExpertLoad& host) {
    return LoadCounters{.experts = host.counts.empty() ? nullptr : host.counts.data(),
                        .slots = host.slot_counts.empty() ? nullptr : host.slot_counts.data()};
  }
  // host.counts ← the device's own counts, where it keeps them.
  virtual void read_expert_load(ExpertLoad& host) {}
  virtual void reset_expert_load() {}

  // One forward pass of `pieces` (packed into `step`); `comm`: the rank's groups, none on one rank.
  virtual void run_pass(const PackedStep& step, std::span<const PassPiece> pieces, const LoadCounters& load,
                        const ParallelComm& comm, const PassOutput& out) = 0;
  // A pass of no rows: an expert-parallel rank serving the other ranks' tokens.
  virtual void idle_pass(const LoadCounters& load, const ParallelComm& comm) = 0;
  // Waits for everything queued.
  virtual void synchronize() {}
  // Captures the decode steps of 1..max_batch sequences ahead (where the backend has graphs);
  // words: the packed inputs they read (pack_step's layout) hold up to this many int32.
  virtual Status capture_decode_graphs(int max_batch, size_t words) { return ok_status(); }
  // Once, on the thread that then runs this device's steps (CUDA: selects its GPU).
  virtual void bind_thread() {}
  // A group of the rank (TP or EP, over host memory) as the loop calls it on this device's memory:
  // CUDA's runs over NCCL, or stages its collectives through the host; host_group() stays.
  virtual std::unique_ptr<Communicator> device_communicator(std::unique_ptr<Communicator> group) { return group; }
};

}  // namespace moeserve
