// The KV cache scales a checkpoint may carry for its attention layers, under vLLM's names:
// `<attention>.k_scale` and `<attention>.v_scale`, or the older `<attention>.kv_scale` for both,
// each a float scalar or [1]. Under --kv-cache-dtype fp8 they are applied as vLLM applies them:
// the cache holds e4m3(k / k_scale) and e4m3(v / v_scale) (MLA: its whole latent entry by
// k_scale), and attention multiplies them back (ops::KvScales). Under --kv-cache-dtype auto
// (float32 KV) they are ignored, as vLLM ignores them for a 16-bit cache.
#pragma once

#include <string>

#include "base/result.h"
#include "kernels/ops.h"
#include "loader/checkpoint.h"

namespace moeserve {

// The scales of the attention block whose tensors' names start with `prefix` (e.g.
// "model.layers.3.self_attn."): k_scale and v_scale, or kv_scale for both, 1 where absent. An
// error names a tensor that is not a float scalar, or a scale that is not positive and finite.
Result<ops::KvScales> read_attention_kv_scales(const WeightSource& weights, const std::string& prefix);

// Under kv_cache_fp8, an error names a scale tensor the loader would not read (not
// `...layers.<n>.self_attn.{k,v,kv}_scale`), rather than serve without it.
Status check_kv_cache_scales(const Checkpoint& checkpoint, bool kv_cache_fp8);

}  // namespace moeserve
