#include "server/prometheus_ep_metrics.h"

#include <vector>

namespace moeserve {

void register_ep_metrics(MetricsRegistry& registry, std::shared_ptr<const RankGroup> group,
                         const std::string& model_name) {
  const EpStats initial = group->ep_stats();
  std::vector<Counter*> rank_tokens;
  for (size_t rank = 0; rank < initial.rank_tokens_total.size(); ++rank) {
    rank_tokens.push_back(&registry.counter("moeserve:ep_rank_tokens",
                                            "(token, expert) assignments computed by each expert-parallel rank.",
                                            {{"model_name", model_name}, {"rank", std::to_string(rank)}}));
  }
  Gauge& balancedness = registry.gauge("moeserve:ep_balancedness",
                                       "Mean over max tokens per expert-parallel rank in the last step (1 = balanced).",
                                       {{"model_name", model_name}});
  Counter& rearrangements = registry.counter("moeserve:eplb_rearrangements", "EPLB expert rearrangements applied.",
                                             {{"model_name", model_name}});
  // Counters only go up: the hook adds what changed since the last scrape.
  auto seen = std::make_shared<EpStats>();
  seen->rank_tokens_total.assign(rank_tokens.size(), 0);
  registry.add_collect_hook([group, rank_tokens, &balancedness, &rearrangements, seen] {
    const EpStats now = group->ep_stats();
    for (size_t rank = 0; rank < rank_tokens.size(); ++rank) {
      rank_tokens[rank]->inc(static_cast<double>(now.rank_tokens_total[rank] - seen->rank_tokens_total[rank]));
    }
    rearrangements.inc(now.rearrangements - seen->rearrangements);
    balancedness.set(now.balancedness);
    *seen = now;
  });
}

}  // namespace moeserve
