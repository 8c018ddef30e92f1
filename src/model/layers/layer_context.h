// What a layer's forward needs besides its input: the exec context, the batch being run and
// this layer's slice of the paged KV cache.
#pragma once

#include "kernels/ops.h"
#include "model/forward_batch.h"

namespace moeserve {

struct LayerContext {
  ExecContext& exec;
  const ForwardBatch& batch;
  PagedKvLayer kv;
  int layer_idx = 0;
};

// A projection's weight [out, in] and optional bias [out] (null view when absent).
struct LinearWeights {
  TensorView weight;
  TensorView bias;
  int64_t out_features() const { return weight.dim(0); }
};

}  // namespace moeserve
