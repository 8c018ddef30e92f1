// StagedCommunicator: a host-memory Communicator (comm/local's threads, comm/gloo's processes) for a rank
// whose step buffers live in device memory. Each collective waits for the rank's stream, copies
// its device input to the host, runs the inner collective there and copies the result back, so
// the inner group's rank order and float32 summation order (bitwise equal results on every rank)
// carry over unchanged. Correct for any number of ranks on one GPU, which is how the tests run
// every parallel layout on one device; slow (two copies and a host wait per collective, and no
// CUDA graph can hold a step that calls it). comm/nccl is the fast path (issue 22).
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace moeserve::cuda {

class StagedCommunicator final : public Communicator {
 public:
  // stream: the rank's cudaStream_t, on which its step's device buffers are written.
  StagedCommunicator(std::unique_ptr<Communicator> inner, void* stream) : inner_(std::move(inner)), stream_(stream) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce_sum(const TensorView& buf) override;
  void all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  void reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  std::vector<int64_t> all_to_all_counts(std::span<const int64_t> send_rows) override {
    return inner_->all_to_all_counts(send_rows);
  }
  void all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows, const TensorView& recv,
                       std::span<const int64_t> recv_rows) override;
  std::vector<int64_t> all_gather_value(int64_t value) override { return inner_->all_gather_value(value); }
  void barrier() override { inner_->barrier(); }
  Communicator& host_group() override { return *inner_; }

 private:
  // A host copy of device tensor `view` (after the stream's queued work), and back.
  Tensor to_host(const TensorView& view) const;
  void to_device(const Tensor& host, const TensorView& view) const;

  std::unique_ptr<Communicator> inner_;
  void* stream_;
};

}  // namespace moeserve::cuda
