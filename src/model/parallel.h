// How one rank's share of the model is laid out (ShardSpec, fixed at load time)
// and the communicators its forward uses (ParallelComm, carried in the layer
// context — no globals). Semantics follow vLLM: TP shards attention heads (KV
// heads split, or replicated when there are fewer KV heads than TP ranks) and,
// without expert parallelism, the dense MLPs and every expert's intermediate
// dim; with expert parallelism the EP group is all TP × DP ranks, each owns
// whole experts (num_physical / ep_size slots per MoE layer) and tokens are
// dispatched to the owners and combined back. Embeddings, norms, routers and
// the LM head are replicated.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "comm/communicator.h"
#include "model/config.h"

namespace moeserve {

// One dimension split into `size` equal parts; this rank holds part `rank`.
struct Partition {
  int rank = 0;
  int size = 1;
};

// Initial expert → EP rank placement (--expert-placement-strategy): linear =
// contiguous blocks; round_robin = rank r owns experts r, r + ep, r + 2·ep, …
enum class ExpertPlacement { kLinear, kRoundRobin };
// How tokens reach the ranks owning their experts (--all2all-backend):
// allgather_reducescatter = every rank sees every token, the partial outputs
// are reduce-scattered back; alltoall = each token goes only to the ranks
// owning one of its experts and its outputs come back point to point (vLLM's
// nccl_alltoall shape).
enum class All2AllBackend { kAllgatherReducescatter, kAlltoall };

Result<ExpertPlacement> parse_expert_placement(std::string_view name);
Result<All2AllBackend> parse_all2all_backend(std::string_view name);
const char* expert_placement_name(ExpertPlacement placement);
const char* all2all_backend_name(All2AllBackend backend);

struct ShardSpec {
  Partition tp;  // attention heads; dense MLPs; experts without EP
  bool expert_parallel = false;
  Partition ep;  // MoE experts with expert_parallel (ep.size = TP × DP)
  ExpertPlacement placement = ExpertPlacement::kLinear;
  All2AllBackend all2all = All2AllBackend::kAllgatherReducescatter;
  int num_redundant_experts = 0;  // EPLB's extra physical slots per MoE layer

  bool is_single() const { return tp.size == 1 && !expert_parallel; }
};

// Refuses layouts the model cannot be split into, naming the reason (heads not
// divisible by TP, experts + redundant slots not divisible by the EP size, …).
Status validate_shard_spec(const ModelConfig& config, const ShardSpec& spec);

// KV heads this rank stores: num_kv_heads / tp when divisible, else 1
// (replicated).
int local_kv_heads(const ModelConfig& config, const Partition& tp);

// Cache elements per token per layer on this rank: MLA's latent, shared rope key and V3.2's index
// key (MlaConfig::cache_entry, replicated over TP), or K and V of the rank's KV heads.
int kv_entry_size(const ModelConfig& config, const Partition& tp = {});

// The communicators a rank's forward needs; null when the group has one rank.
struct ParallelComm {
  Communicator* tp = nullptr;  // the TP group (ranks of one DP replica)
  Communicator* ep = nullptr;  // the EP group (all TP × DP ranks) when expert_parallel
};

}  // namespace moeserve
