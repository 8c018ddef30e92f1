// CudaGraph: one captured sequence of stream work, replayed with a single launch (what removes
// the per-kernel launch gaps of a decode step). Capture is thread-local: work queued on the
// captured stream between begin_capture and end_capture is recorded, not run; nothing in it may
// wait for the host (a synchronize ends the capture with an error).
#pragma once

#include "base/result.h"

namespace moeserve::cuda {

class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  ~CudaGraph();

  static Status begin_capture(void* stream);
  // Ends the capture begun on `stream` and instantiates what it recorded.
  static Result<CudaGraph> end_capture(void* stream);
  void launch(void* stream) const;

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace moeserve::cuda
