#include "model/step_workspace.h"

#include <algorithm>

#include "kernels/ops.h"

namespace moeserve {

int64_t moe_floats_per_token(const ModelConfig& config, bool experts_large) {
  if (!config.moe) return 0;
  const MoeConfig& m = *config.moe;
  const int64_t hidden = config.hidden_size;
  const int64_t inter = m.expert_intermediate_size;
  // Per routed entry: its expert's output row and its gathered input row (2 hidden). Streamed
  // experts add the entry's gate/up and act rows (3 inter) and the down projection's split-K
  // partial sums (8 splits at most: 8 hidden); experts run one at a time hold the largest
  // expert's gate/up and act rows, at most one a token (3 inter a token).
  const int64_t routed = experts_large ? m.top_k * 2 * hidden + 3 * inter : m.top_k * (10 * hidden + 3 * inter);
  return 4 * m.num_experts + 8 * m.top_k + routed + 3 * m.shared_intermediate_size + hidden + 1 +
         (m.scale_expert_input ? m.top_k * (hidden + 1) : 0);
}

size_t step_workspace_bytes(const ModelConfig& c, int max_tokens, size_t extra_bytes, bool experts_large,
                            int max_logit_rows) {
  const int64_t t = max_tokens;
  const int64_t logit_rows = max_logit_rows < 0 ? t : std::min<int64_t>(t, max_logit_rows);
  const int64_t hidden = c.hidden_size;
  int64_t attn = 0;  // floats per token inside attention
  if (c.is_mla()) {
    const MlaConfig& m = *c.mla;
    attn = m.q_lora_rank +
           c.num_heads * (m.qk_head_dim() + (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank + m.v_head_dim) +
           m.kv_lora_rank + m.qk_rope_head_dim;
    if (m.indexer) attn += m.indexer->head_dim + m.indexer->heads * (1 + m.indexer->head_dim) + m.indexer->topk;
  } else {
    attn = static_cast<int64_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim;
  }
  const int64_t ffn =
      std::max<int64_t>(3 * static_cast<int64_t>(c.intermediate_size), moe_floats_per_token(c, experts_large));
  const int64_t widest = std::max<int64_t>({hidden, attn, ffn});
  const int64_t floats =
      t * (4 * hidden + attn + ffn + widest /* bf16 copies, generously */) + logit_rows * c.vocab_size;
  return static_cast<size_t>(floats) * sizeof(float) + extra_bytes + (size_t{1} << 20);
}

namespace cuda {

size_t step_workspace_bytes(const ModelConfig& c, int max_tokens, bool experts_large,
                            const std::function<size_t(int rows)>& fp8_gemm_bytes, int max_logit_rows) {
  // moe_permute's per-chunk counts of prefill-sized plans are counted twice (the loop's estimate
  // takes its widest per-token need twice); the plain MLA prefill's expanded keys and values fit
  // in what the loop reserves per token, for contexts up to max_tokens.
  const auto bytes = [&](int tokens, bool large) {
    const size_t t = tokens;
    const size_t permute = c.moe ? 2 * t * (size_t(c.moe->top_k) * c.moe->num_experts / kMoePermuteChunk + 1) : 0;
    const size_t mla_scores = c.is_mla() ? kMlaScoreFloats : 0;
    const size_t router_f32 = c.moe ? size_t(c.moe->num_experts) * c.hidden_size : 0;
    const size_t fp8 = fp8_gemm_bytes ? fp8_gemm_bytes(tokens) : 0;
    return moeserve::step_workspace_bytes(
        c, tokens, (permute + mla_scores + router_f32) * sizeof(float) + fp8 + (size_t{64} << 20), large,
        max_logit_rows);
  };
  // Past kMaxMmaRows tokens, experts that run one at a time need far less than streamed ones (no
  // split-K sums); steps of up to kMaxMmaRows tokens stream them.
  if (!c.moe || !experts_large || max_tokens <= kMaxMmaRows) return bytes(max_tokens, false);
  return std::max(bytes(max_tokens, true), bytes(kMaxMmaRows, false));
}

}  // namespace cuda
}  // namespace moeserve
