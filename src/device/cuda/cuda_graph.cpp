// CUDA runtime implementation of cuda_graph.h.
#include "device/cuda/cuda_graph.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace moeserve::cuda {

CudaGraph::CudaGraph(CudaGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

CudaGraph::~CudaGraph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

Status CudaGraph::begin_capture(void* stream) {
  const cudaError_t status =
      cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return make_error("cannot begin a CUDA graph capture: {}", cudaGetErrorString(status));
  }
  return ok_status();
}

Result<CudaGraph> CudaGraph::end_capture(void* stream) {
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph);
  if (status != cudaSuccess) {
    cudaGetLastError();
    if (graph != nullptr) cudaGraphDestroy(graph);
    return make_error("CUDA graph capture failed: {}", cudaGetErrorString(status));
  }
  CudaGraph out;
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return make_error("cannot instantiate a CUDA graph: {}", cudaGetErrorString(status));
  }
  out.exec_ = exec;
  return std::move(out);
}

void CudaGraph::launch(void* stream) const {
  const cudaError_t status = cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream));
  if (status != cudaSuccess) {
    std::fprintf(stderr, "moeserve: CUDA graph launch failed: %s\n", cudaGetErrorString(status));
    std::abort();
  }
}

}  // namespace moeserve::cuda
