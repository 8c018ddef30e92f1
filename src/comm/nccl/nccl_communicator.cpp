#include "comm/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

namespace moeserve {

namespace {

ncclComm_t as_comm(void* comm) { return static_cast<ncclComm_t>(comm); }
cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// A failed NCCL call: the group is unusable after (as the other implementations' CommError).
void check(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) throw CommError(fmt::format("NCCL {}: {}", what, ncclGetErrorString(result)));
}

// Bytes of one row of a [rows, ...] buffer of `total_rows` rows.
size_t row_bytes(const TensorView& view, int64_t total_rows) {
  return total_rows == 0 ? 0 : view.nbytes() / static_cast<size_t>(total_rows);
}

std::vector<int64_t> offsets_of(std::span<const int64_t> rows) {
  std::vector<int64_t> offsets(rows.size() + 1, 0);
  std::partial_sum(rows.begin(), rows.end(), offsets.begin() + 1);
  return offsets;
}

}  // namespace

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(std::unique_ptr<Communicator> host, void* stream,
                                                                   int device) {
  std::unique_ptr<NcclCommunicator> comm(new NcclCommunicator(std::move(host), stream));
  Communicator& group = *comm->host_;
  // Ranks of the group on the same device index get host ids of their own (see the header).
  const std::vector<int64_t> devices = group.all_gather_value(device);
  bool shared = false;
  for (int r = 0; r < group.size(); ++r) shared = shared || (r != group.rank() && devices[r] == device);
  if (shared) {
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    setenv("NCCL_HOSTID", fmt::format("{}-moeserve-rank-{}-{}", name, getpid(), group.rank()).c_str(), 1);
  }
  // Rank 0's unique id, to every rank as host bytes (128 of them: 32 float32 "rows" of one).
  ncclUniqueId id{};
  static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0);
  constexpr int64_t kWords = sizeof(ncclUniqueId) / sizeof(float);
  if (group.rank() == 0) {
    const ncclResult_t made = ncclGetUniqueId(&id);
    if (made != ncclSuccess) return make_error("NCCL ncclGetUniqueId: {}", ncclGetErrorString(made));
  }
  Tensor mine = Tensor::uninitialized(DType::kF32, Shape{1, kWords});
  std::memcpy(mine.view().data, &id, sizeof id);
  Tensor all = Tensor::uninitialized(DType::kF32, Shape{group.size(), kWords});
  const std::vector<int64_t> ones(group.size(), 1);
  group.all_gather_rows(mine.view(), ones, all.view());
  std::memcpy(&id, all.view().data, sizeof id);
  if (cudaSetDevice(device) != cudaSuccess) return make_error("NCCL: cannot select GPU {}", device);
  ncclComm_t nccl = nullptr;
  const ncclResult_t joined = ncclCommInitRank(&nccl, group.size(), id, group.rank());
  if (joined != ncclSuccess) {
    return make_error("NCCL ncclCommInitRank (rank {} of {}{}): {}", group.rank(), group.size(),
                      shared ? ", ranks sharing a GPU over sockets" : "", ncclGetErrorString(joined));
  }
  comm->comm_ = nccl;
  return comm;
}

bool NcclCommunicator::available() { return true; }

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    cudaStreamSynchronize(as_stream(stream_));
    ncclCommDestroy(as_comm(comm_));
  }
}

void NcclCommunicator::all_reduce_sum(const TensorView& buf) {
  MS_CHECK(buf.dtype == DType::kF32);
  check(ncclAllReduce(buf.data, buf.data, buf.numel(), ncclFloat32, ncclSum, as_comm(comm_), as_stream(stream_)),
        "all-reduce");
}

void NcclCommunicator::all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                       const TensorView& out) {
  const std::vector<int64_t> offsets = offsets_of(rows_per_rank);
  const size_t row = row_bytes(out, offsets.back());
  auto* dst = static_cast<char*>(out.data);
  // Each rank's rows broadcast from it into their place on every rank.
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size(); ++r) {
    if (rows_per_rank[r] == 0) continue;
    check(ncclBroadcast(r == rank() ? in.data : nullptr, dst + offsets[r] * row, rows_per_rank[r] * row, ncclChar, r,
                        as_comm(comm_), as_stream(stream_)),
          "all-gather (broadcast)");
  }
  check(ncclGroupEnd(), "all-gather");
}

void NcclCommunicator::reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                          const TensorView& out) {
  MS_CHECK(in.dtype == DType::kF32);
  const std::vector<int64_t> offsets = offsets_of(rows_per_rank);
  const int64_t width = offsets.back() == 0 ? 0 : in.numel() / offsets.back();
  const auto* src = static_cast<const float*>(in.data);
  // Each rank's rows summed onto it.
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size(); ++r) {
    if (rows_per_rank[r] == 0) continue;
    check(ncclReduce(src + offsets[r] * width, r == rank() ? out.data : nullptr, rows_per_rank[r] * width, ncclFloat32,
                     ncclSum, r, as_comm(comm_), as_stream(stream_)),
          "reduce-scatter (reduce)");
  }
  check(ncclGroupEnd(), "reduce-scatter");
}

void NcclCommunicator::all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows,
                                       const TensorView& recv, std::span<const int64_t> recv_rows) {
  const std::vector<int64_t> send_offsets = offsets_of(send_rows);
  const std::vector<int64_t> recv_offsets = offsets_of(recv_rows);
  const size_t row = send_offsets.back() > 0 ? row_bytes(send, send_offsets.back())
                                             : row_bytes(recv, recv_offsets.back());
  const auto* src = static_cast<const char*>(send.data);
  auto* dst = static_cast<char*>(recv.data);
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size(); ++r) {
    if (send_rows[r] > 0) {
      check(ncclSend(src + send_offsets[r] * row, send_rows[r] * row, ncclChar, r, as_comm(comm_), as_stream(stream_)),
            "all-to-all (send)");
    }
    if (recv_rows[r] > 0) {
      check(ncclRecv(dst + recv_offsets[r] * row, recv_rows[r] * row, ncclChar, r, as_comm(comm_), as_stream(stream_)),
            "all-to-all (recv)");
    }
  }
  check(ncclGroupEnd(), "all-to-all");
}

}  // namespace moeserve
