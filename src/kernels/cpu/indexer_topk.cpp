// CPU reference: DeepSeek-V3.2's lightning indexer. One query row per work item: its score
// against every key of its sequence up to its position (the formula in ops.h), then the topk
// largest by partial sort, their positions written in ascending order; a row with at most topk
// keys keeps them all unscored. An e4m3 cache (cache_fp8): each index key decoded exactly first
// (kv_elements.h).
#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/cpu/kv_elements.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void indexer_topk(ExecContext& ctx, const IndexerArgs& args) {
  MS_CHECK(args.topk > 0 && args.heads > 0 && args.head_dim > 0);
  ctx.pool->parallel_for(args.tokens, 1, [&](size_t begin, size_t end) {
    std::vector<std::pair<float, int32_t>> scored;                       // (score, key position)
    std::vector<float> key_scratch(args.cache_fp8 ? args.head_dim : 0);  // fp8: the decoded key [head_dim]
    for (size_t row = begin; row < end; ++row) {
      const int position = args.positions[row];
      int32_t* out = args.out + static_cast<int64_t>(row) * args.topk;
      if (position < args.topk) {  // every key is kept: no score decides anything
        for (int i = 0; i < args.topk; ++i) out[i] = i <= position ? i : -1;
        continue;
      }
      const int32_t* block_table = args.block_tables + args.table_offsets[row];
      const float* q = args.q + static_cast<int64_t>(row) * args.q_stride;
      const float* w = args.weights + static_cast<int64_t>(row) * args.weights_stride;
      scored.clear();
      for (int j = 0; j <= position; ++j) {
        const int64_t slot = paged_slot(block_table, args.block_size, j);
        const float* key = read_kv(args.cache, args.cache_fp8, slot, args.entry_size, args.key_offset, args.head_dim,
                                   key_scratch.data());
        float score = 0.0f;
        for (int h = 0; h < args.heads; ++h) {
          const float* qh = q + static_cast<int64_t>(h) * args.head_dim;
          float dot = 0.0f;
          for (int d = 0; d < args.head_dim; ++d) dot += qh[d] * key[d];
          score += w[h] * args.weight_scale * std::max(0.0f, dot * args.scale);
        }
        scored.emplace_back(score, j);
      }
      const int kept = std::min<int>(args.topk, static_cast<int>(scored.size()));
      // Larger scores first; of equal scores the earlier key.
      std::partial_sort(scored.begin(), scored.begin() + kept, scored.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      });
      for (int i = 0; i < kept; ++i) out[i] = scored[static_cast<size_t>(i)].second;
      std::sort(out, out + kept);
      std::fill(out + kept, out + args.topk, -1);
    }
  });
}

}  // namespace moeserve::ops
