// The KV cache scales a checkpoint may carry for its attention layers, under vLLM's names:
// `<attention>.k_scale` and `<attention>.v_scale`, or the older `<attention>.kv_scale`, each a
// float scalar or [1]. --kv-cache-dtype fp8 stores K and V at vLLM's default scale 1.0 on both
// backends; applying a checkpoint's own scales is not built, so under fp8 a checkpoint whose
// scales differ from 1 is refused by name instead of served with numerics other than vLLM's.
// Under --kv-cache-dtype auto (float32 KV) they are ignored, as vLLM ignores them for a 16-bit
// cache.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "loader/checkpoint.h"

namespace moeserve {

struct KvCacheScale {
  std::string name;  // the checkpoint's tensor
  float value = 1.0f;
};

// Every tensor named *.k_scale, *.v_scale or *.kv_scale, in name order; an error names one that
// is not a float scalar or [1].
Result<std::vector<KvCacheScale>> read_kv_cache_scales(const Checkpoint& checkpoint);

// OK unless kv_cache_fp8 and some scale is not 1.
Status check_kv_cache_scales(const Checkpoint& checkpoint, bool kv_cache_fp8);

}  // namespace moeserve
