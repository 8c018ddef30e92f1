// comm/nccl without NCCL (nccl.h or libnccl not found at configure time): CUDA ranks keep staging
// their collectives through host memory.
#include "comm/nccl/nccl_communicator.h"

namespace moeserve {

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(std::unique_ptr<Communicator>, void*, int) {
  return make_error("this moeserve was built without NCCL (nccl.h and libnccl were not found)");
}

bool NcclCommunicator::available() { return false; }

NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::all_reduce_sum(const TensorView&) {}
void NcclCommunicator::all_gather_rows(const TensorView&, std::span<const int64_t>, const TensorView&) {}
void NcclCommunicator::reduce_scatter_sum(const TensorView&, std::span<const int64_t>, const TensorView&) {}
void NcclCommunicator::all_to_all_rows(const TensorView&, std::span<const int64_t>, const TensorView&,
                                       std::span<const int64_t>) {}

}  // namespace moeserve
