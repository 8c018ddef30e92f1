// Communicator: the collectives one group of ranks (a TP group, the EP group)
// runs together — what tensor parallelism (all-reduce of row-parallel partial
// sums), sequence-parallel MoE (all-gather / reduce-scatter of token rows) and
// expert-parallel dispatch/combine (all-to-all of token rows to the ranks
// owning their experts) need. Every rank of the group must call the same
// collectives in the same order with consistent sizes; a call returns once this
// rank's output is complete. Reductions sum float32 in rank order (rank 0
// first), so every rank holds bitwise the same result whatever the thread
// timing. Buffers are caller-allocated (the caller learns variable sizes first
// through all_gather_value / all_to_all_counts), which is the shape an NCCL
// implementation (comm/nccl) needs too. Implementations: local/ (threads of one
// process sharing memory, for the CPU backend and CI), gloo/ (CPU ranks in
// separate processes, over TCP). An implementation whose ranks can fail
// independently (a peer process dies, a peer does not take part within the
// timeout) throws CommError from the collective; the group is unusable after.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include "tensor/tensor.h"

namespace moeserve {

// A collective (or a group's set-up) that could not complete; the message names
// the rank, the operation and the peer that failed.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // buf = Σ_r buf_r elementwise, in place. buf float32, the same shape on every
  // rank.
  virtual void all_reduce_sum(const TensorView& buf) = 0;

  // out = concat_r in_r along axis 0, in rank order. in [rows_r, ...] (any
  // dtype, the same row width on every rank), rows_per_rank[r] = rows_r (from
  // all_gather_value), out [Σ rows_r, ...].
  virtual void all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) = 0;

  // The inverse of all_gather_rows with a sum: in [Σ rows_r, W] float32 on
  // every rank (rows grouped by owner rank, rows_per_rank[r] of them for rank
  // r); out [rows_{this}, W] = Σ_s in_s[this rank's rows], summed in rank order
  // s = 0, 1, ….
  virtual void reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                  const TensorView& out) = 0;

  // recv_rows[s] = the send_rows[this] that rank s passes (how many rows s
  // sends here).
  virtual std::vector<int64_t> all_to_all_counts(std::span<const int64_t> send_rows) = 0;
  // send [Σ send_rows, ...] grouped by destination (send_rows[d] rows for rank
  // d, in order); recv [Σ recv_rows, ...] grouped by source rank. Any dtype,
  // equal row width everywhere.
  virtual void all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows, const TensorView& recv,
                               std::span<const int64_t> recv_rows) = 0;

  // Every rank's value, indexed by rank.
  virtual std::vector<int64_t> all_gather_value(int64_t value) = 0;

  virtual void barrier() = 0;

  // The same group over host memory, for what a rank keeps on the host (the routing metadata of
  // expert-parallel dispatch, EPLB's expert moves): itself, unless its row collectives take
  // device buffers (comm/nccl, backend/cuda's StagedCommunicator), which return their host group.
  virtual Communicator& host_group() { return *this; }
};

}  // namespace moeserve
