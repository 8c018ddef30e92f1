// LocalGroup: an in-process communicator group for N threads (one per rank)
// sharing memory. Each collective is two phases around a barrier: every rank
// publishes pointers to its inputs and outputs in its slot, waits for all,
// reads the others' inputs into its own output (sums in rank order), then waits
// again so no buffer is released while another rank still reads it.
// Deterministic by construction; used by the CPU backend's multi-rank runner
// and the tests.
#pragma once

#include <barrier>
#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace moeserve {

class LocalGroup {
 public:
  explicit LocalGroup(int size);
  int size() const { return size_; }
  // The communicator rank `rank` uses; the group must outlive it. Call once per
  // rank.
  std::unique_ptr<Communicator> communicator(int rank);

 private:
  friend class LocalCommunicator;
  // What one rank publishes for the collective in flight.
  struct Slot {
    const void* send = nullptr;
    void* recv = nullptr;
    std::span<const int64_t> counts;  // rows per rank (gather/scatter) or per
                                      // destination (all-to-all)
    int64_t value = 0;
  };

  int size_;
  std::barrier<> barrier_;
  std::vector<Slot> slots_;
};

}  // namespace moeserve
