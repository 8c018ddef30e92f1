#include "backend/cuda/staged_communicator.h"

#include "device/cuda/device_memory.h"

namespace moeserve::cuda {

Tensor StagedCommunicator::to_host(const TensorView& view) const {
  Tensor host = Tensor::uninitialized(view.dtype, view.shape);
  if (view.nbytes() > 0) copy_to_host(host.view().data, view.data, view.nbytes(), stream_);
  synchronize_stream(stream_);
  return host;
}

void StagedCommunicator::to_device(const Tensor& host, const TensorView& view) const {
  if (view.nbytes() > 0) copy_to_device(view.data, host.view().data, view.nbytes(), stream_);
  synchronize_stream(stream_);  // before `host` is freed
}

void StagedCommunicator::all_reduce_sum(const TensorView& buf) {
  Tensor host = to_host(buf);
  inner_->all_reduce_sum(host.view());
  to_device(host, buf);
}

void StagedCommunicator::all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                         const TensorView& out) {
  const Tensor host_in = to_host(in);
  Tensor host_out = Tensor::uninitialized(out.dtype, out.shape);
  inner_->all_gather_rows(host_in.view(), rows_per_rank, host_out.view());
  to_device(host_out, out);
}

void StagedCommunicator::reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                            const TensorView& out) {
  const Tensor host_in = to_host(in);
  Tensor host_out = Tensor::uninitialized(out.dtype, out.shape);
  inner_->reduce_scatter_sum(host_in.view(), rows_per_rank, host_out.view());
  to_device(host_out, out);
}

void StagedCommunicator::all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows,
                                         const TensorView& recv, std::span<const int64_t> recv_rows) {
  const Tensor host_send = to_host(send);
  Tensor host_recv = Tensor::uninitialized(recv.dtype, recv.shape);
  inner_->all_to_all_rows(host_send.view(), send_rows, host_recv.view(), recv_rows);
  to_device(host_recv, recv);
}

}  // namespace moeserve::cuda
