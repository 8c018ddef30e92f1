// Expert-parallel metrics of a RankGroup, refreshed at every scrape: moeserve:ep_rank_tokens_total
// {rank} — the (token, expert) assignments each EP rank computed — and moeserve:ep_balancedness,
// mean / max tokens per EP rank over the last step (1 = even), plus
// moeserve:eplb_rearrangements_total. The imbalance vLLM's docs tell users to look for, in one query.
#pragma once

#include <memory>
#include <string>

#include "metrics/metrics_registry.h"
#include "runtime/rank_group.h"

namespace moeserve {

// Registers the series (one per EP rank) and a collect hook reading group->ep_stats(); the
// group must outlive the registry's renders.
void register_ep_metrics(MetricsRegistry& registry, std::shared_ptr<const RankGroup> group,
                         const std::string& model_name);

}  // namespace moeserve
