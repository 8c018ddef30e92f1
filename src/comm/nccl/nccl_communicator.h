// NcclCommunicator: a Communicator over NCCL for ranks whose buffers live in device memory (CUDA
// ranks): every collective is queued on the rank's stream and returns at once, the following ops
// on that stream see its result (no host round trip, unlike backend/cuda/staged_communicator.h).
// Row collectives with unequal rows per rank are grouped NCCL broadcasts, reductions and
// send/recv pairs. Sums follow NCCL's order, not rank order: every rank still holds the same
// result. The host-side collectives (all_gather_value, all_to_all_counts, barrier) and the
// set-up (the ncclUniqueId travels from rank 0) go through `host`, the same group over host
// memory (comm/gloo between worker processes).
//
// Ranks sharing one GPU: NCCL refuses two ranks of a communicator on one device of one host. When
// another rank of the group reports the same device index, each rank first takes a host id of its
// own (NCCL_HOSTID, before NCCL's first call in the process), so NCCL connects them over its
// socket transport as if on different hosts: slow, correct, and what lets every layout run on one
// GPU in tests. One rank per process only (the worker processes of --distributed-executor-backend
// mp), since that id is per process. Keep NCCL_NVLS_ENABLE=0 in the environment on shared hosts.
#pragma once

#include <memory>

#include "base/result.h"
#include "comm/communicator.h"

namespace moeserve {

class NcclCommunicator final : public Communicator {
 public:
  // host: the group over host memory (kept for the host-side collectives); stream: the
  // cudaStream_t the rank queues its steps on; device: the rank's GPU on its host.
  static Result<std::unique_ptr<NcclCommunicator>> create(std::unique_ptr<Communicator> host, void* stream, int device);
  // Whether this build has NCCL (else create() fails saying so).
  static bool available();
  ~NcclCommunicator() override;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  void all_reduce_sum(const TensorView& buf) override;
  void all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  void reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  std::vector<int64_t> all_to_all_counts(std::span<const int64_t> send_rows) override {
    return host_->all_to_all_counts(send_rows);
  }
  void all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows, const TensorView& recv,
                       std::span<const int64_t> recv_rows) override;
  std::vector<int64_t> all_gather_value(int64_t value) override { return host_->all_gather_value(value); }
  void barrier() override { host_->barrier(); }
  Communicator& host_group() override { return *host_; }

 private:
  NcclCommunicator(std::unique_ptr<Communicator> host, void* stream) : host_(std::move(host)), stream_(stream) {}

  std::unique_ptr<Communicator> host_;
  void* stream_;
  void* comm_ = nullptr;  // ncclComm_t
};

}  // namespace moeserve
