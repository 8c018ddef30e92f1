// GlooCommunicator: the Communicator for CPU ranks in separate processes (on one host or
// several), over gloo's TCP transport (Debian libgloo-dev, the library PyTorch uses for CPU
// collectives). Same semantics as LocalCommunicator, bit for bit: reductions sum float32 in
// rank order (rank 0 first), so every rank holds the same bits.
//
// gloo is used for what it is good at — the rendezvous (gloo::rendezvous::Context over a
// TcpStore) and a full mesh of TCP pairs with tagged, asynchronous point-to-point transfers
// (unbound buffers). Every collective is one or two rounds of direct exchange in which each rank
// sends one message to and receives one from every other rank; the reductions are computed here
// in a fixed order rather than by gloo's allreduce, whose summation order depends on the
// algorithm and the rank. Each collective gets its own slot (tag), so a rank that runs ahead
// into the next collective cannot be confused with the current one.
//
// Failure: a collective that cannot complete throws CommError naming this rank, the operation
// and the peer (rank and address): at once when a peer's connection closes (the process died),
// after the timeout when a peer stays silent. The group is unusable afterwards (later calls
// throw too). connect fails with a Result error naming the ranks that did not arrive.
//
// Process-wide side effect: connect sets SIGPIPE to ignored (when it is at its default), since
// gloo writes to sockets with writev and a peer that died would otherwise kill this process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "comm/communicator.h"
#include "comm/gloo/tcp_store.h"

namespace gloo {
class Context;
}

namespace moeserve {

struct GlooOptions {
  // The rendezvous store (hosted by rank 0's process): --data-parallel-address and
  // --data-parallel-rpc-port in vLLM's terms.
  std::string address = "127.0.0.1";
  int port = 0;
  int world_size = 1;
  int rank = 0;
  // Bounds the rendezvous (every rank must arrive within it) and each collective (a peer that
  // sends nothing for this long fails it); set_timeout changes the latter later.
  std::chrono::milliseconds timeout{60'000};
  // Scopes this group's keys in the store, so several groups (a TP group per replica, the EP
  // group) can meet through one store. Unique per group and per store.
  std::string prefix = "moeserve";
  // The address this rank's gloo pairs listen on; empty = the local address of this process's
  // connection to the store (the interface that reaches rank 0's host).
  std::string local_address;
};

class GlooCommunicator final : public Communicator {
 public:
  // Connects to (rank 0: hosts) the store at options.address:port, then joins the group.
  static Result<std::unique_ptr<GlooCommunicator>> connect(const GlooOptions& options);
  // Joins the group through a store this process already holds (several groups, one store);
  // options.address/port are only used in messages. The communicator keeps the store alive.
  static Result<std::unique_ptr<GlooCommunicator>> connect(const GlooOptions& options, std::shared_ptr<TcpStore> store);
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // buf [any shape] float32, the same shape on every rank. Deterministic reduce-scatter by
  // owned chunk, then all-gather: rank c owns elements [c·n/P, (c+1)·n/P), receives every rank's
  // copy of that chunk, sums them in rank order 0, 1, … and sends the result to every rank.
  void all_reduce_sum(const TensorView& buf) override;
  // in [rows_this, ...] any dtype; out [Σ rows_r, ...] the same dtype and row width.
  void all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  // in [Σ rows_r, W] float32, out [rows_this, W] float32: each rank receives every rank's copy
  // of its own rows and sums them in rank order.
  void reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override;
  // send_rows [P] → recv_rows [P].
  std::vector<int64_t> all_to_all_counts(std::span<const int64_t> send_rows) override;
  // send [Σ send_rows, ...] grouped by destination, recv [Σ recv_rows, ...] grouped by source;
  // any dtype, the same row width.
  void all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows, const TensorView& recv,
                       std::span<const int64_t> recv_rows) override;
  // [P] values, indexed by rank.
  std::vector<int64_t> all_gather_value(int64_t value) override;
  // Returns once every rank has entered it.
  void barrier() override;

  // The per-collective timeout (initially options.timeout).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  // The address rank r's pairs listen on (what it published at the rendezvous).
  const std::string& peer_address(int r) const { return addresses_[r]; }

 private:
  GlooCommunicator() = default;
  // One round of the direct exchange: to every peer p, send[p] (bytes at data); from every peer
  // p, recv[p]. send[rank()] and recv[rank()] are ignored (the caller copies locally).
  struct Bytes {
    const void* data;
    size_t bytes;
  };
  void exchange(const char* operation, const std::vector<Bytes>& send, const std::vector<Bytes>& recv);
  [[noreturn]] void fail(const char* operation, const std::string& why);

  int rank_ = 0;
  int size_ = 1;
  std::string prefix_;
  std::string endpoint_;
  std::vector<std::string> addresses_;  // [P] each rank's listening address
  std::chrono::milliseconds timeout_{60'000};
  std::shared_ptr<TcpStore> store_;
  std::shared_ptr<gloo::Context> context_;
  uint64_t next_slot_ = 0;
  std::string broken_;  // why the group is unusable, once a collective failed
  std::vector<float> scratch_;
  char dummy_ = 0;  // a valid address for zero-byte transfers
};

}  // namespace moeserve
