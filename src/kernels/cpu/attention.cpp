// CPU reference: causal (optionally sliding-window) GQA attention reading K/V from the paged
// cache. One (token, head) pair per work item; softmax in float32 with the running max.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace moeserve::ops {

namespace {

// Flattens (sequence, query token) pairs so work splits evenly across threads.
struct QueryRef {
  const SequenceView* seq;
  int position;
  int64_t row;
};

std::vector<QueryRef> list_queries(std::span<const SequenceView> sequences) {
  std::vector<QueryRef> queries;
  for (const SequenceView& seq : sequences) {
    for (int i = 0; i < seq.num_query; ++i) {
      queries.push_back({&seq, seq.context_len - seq.num_query + i, static_cast<int64_t>(seq.query_begin) + i});
    }
  }
  return queries;
}

}  // namespace

void attention(ExecContext& ctx, const TensorView& q, const PagedKvLayer& kv, std::span<const SequenceView> sequences,
               const AttentionParams& params, const TensorView& out) {
  const int head_dim = params.head_dim;
  const int group = params.num_heads / params.num_kv_heads;
  const int64_t v_offset = static_cast<int64_t>(params.num_kv_heads) * head_dim;
  const std::vector<QueryRef> queries = list_queries(sequences);
  const size_t items = queries.size() * params.num_heads;
  ctx.pool->parallel_for(items, 4, [&](size_t begin, size_t end) {
    std::vector<float> scores;
    for (size_t item = begin; item < end; ++item) {
      const QueryRef& query = queries[item / params.num_heads];
      const int head = static_cast<int>(item % params.num_heads);
      const int kv_head = head / group;
      const float* qv = q.as<float>() + (query.row * params.num_heads + head) * head_dim;
      const int first_key = params.sliding_window > 0 ? std::max(0, query.position - params.sliding_window + 1) : 0;
      const int num_keys = query.position + 1 - first_key;
      scores.resize(num_keys);
      float max_score = -INFINITY;
      for (int k = 0; k < num_keys; ++k) {
        const float* key = kv.entry(query.seq->block_table.data(), first_key + k) + kv_head * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += qv[d] * key[d];
        scores[k] = dot * params.scale;
        max_score = std::max(max_score, scores[k]);
      }
      float denominator = 0.0f;
      for (int k = 0; k < num_keys; ++k) {
        scores[k] = std::exp(scores[k] - max_score);
        denominator += scores[k];
      }
      float* dst = out.as<float>() + (query.row * params.num_heads + head) * head_dim;
      std::fill(dst, dst + head_dim, 0.0f);
      for (int k = 0; k < num_keys; ++k) {
        const float* value = kv.entry(query.seq->block_table.data(), first_key + k) + v_offset + kv_head * head_dim;
        const float p = scores[k] / denominator;
        for (int d = 0; d < head_dim; ++d) dst[d] += p * value[d];
      }
    }
  });
}

void mla_attention_absorbed(ExecContext& ctx, const TensorView& q_absorbed, const PagedKvLayer& kv,
                            std::span<const SequenceView> sequences, int num_heads, float scale,
                            const TensorView& out_latent) {
  const int64_t latent_dim = out_latent.dim(2);
  const int64_t key_dim = kv.entry_size;  // latent + rope key
  MS_CHECK(q_absorbed.dim(2) == key_dim);
  const std::vector<QueryRef> queries = list_queries(sequences);
  const size_t items = queries.size() * num_heads;
  ctx.pool->parallel_for(items, 4, [&](size_t begin, size_t end) {
    std::vector<float> scores;
    for (size_t item = begin; item < end; ++item) {
      const QueryRef& query = queries[item / num_heads];
      const int64_t head = static_cast<int64_t>(item % num_heads);
      const float* qv = q_absorbed.as<float>() + (query.row * num_heads + head) * key_dim;
      const int num_keys = query.position + 1;
      scores.resize(num_keys);
      float max_score = -INFINITY;
      for (int k = 0; k < num_keys; ++k) {
        const float* key = kv.entry(query.seq->block_table.data(), k);
        float dot = 0.0f;
        for (int64_t d = 0; d < key_dim; ++d) dot += qv[d] * key[d];
        scores[k] = dot * scale;
        max_score = std::max(max_score, scores[k]);
      }
      float denominator = 0.0f;
      for (int k = 0; k < num_keys; ++k) {
        scores[k] = std::exp(scores[k] - max_score);
        denominator += scores[k];
      }
      float* dst = out_latent.as<float>() + (query.row * num_heads + head) * latent_dim;
      std::fill(dst, dst + latent_dim, 0.0f);
      for (int k = 0; k < num_keys; ++k) {
        const float* latent = kv.entry(query.seq->block_table.data(), k);
        const float p = scores[k] / denominator;
        for (int64_t d = 0; d < latent_dim; ++d) dst[d] += p * latent[d];
      }
    }
  });
}

}  // namespace moeserve::ops
