// StepArena: a step's scratch — a bump allocator over memory someone else owns (host memory for
// the CPU backend, device memory for CUDA's DeviceArena). Allocations are 256-byte aligned; a
// caller rewinds to an earlier used() once the work using what came after is done (or, on a
// stream, queued: everything there runs in order).
#pragma once

#include <algorithm>
#include <cstddef>

#include "base/check.h"

namespace moeserve {

class StepArena {
 public:
  StepArena() = default;
  StepArena(void* base, size_t capacity) : base_(static_cast<char*>(base)), capacity_(capacity) {}

  // `count` elements of T; aborts when the arena is full (a sizing bug).
  template <typename T>
  T* alloc(size_t count) {
    return static_cast<T*>(alloc_bytes(count * sizeof(T)));
  }
  void* alloc_bytes(size_t bytes) {
    const size_t aligned = (used_ + 255) / 256 * 256;
    MS_CHECK_MSG(aligned + bytes <= capacity_, "step arena overflow (a workspace sizing bug)");
    used_ = aligned + bytes;
    peak_ = std::max(peak_, used_);
    return base_ + aligned;
  }
  void reset() { used_ = 0; }
  void rewind(size_t mark) { used_ = mark; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t peak() const { return peak_; }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t peak_ = 0;
};

}  // namespace moeserve
