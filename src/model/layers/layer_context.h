// What a layer's forward needs besides its input: the exec context, the batch being run,
// this layer's slice of the paged KV cache and the rank's communicators (null on one rank).
#pragma once

#include "kernels/ops.h"
#include "model/forward_batch.h"
#include "model/parallel.h"

namespace moeserve {

struct LayerContext {
  ExecContext& exec;
  const ForwardBatch& batch;
  PagedKvLayer kv;
  int layer_idx = 0;
  ParallelComm comm;
};

// A projection's weight [out, in] and optional bias [out] (null view when absent).
struct LinearWeights {
  TensorView weight;
  TensorView bias;
  int64_t out_features() const { return weight.dim(0); }
};

}  // namespace moeserve
