// Device memory, streams and library handles for the CUDA backend, behind a plain C++ header
// (no CUDA includes) so runtime/cuda can own them without seeing the CUDA runtime.
//   DeviceBuffer: one cudaMalloc'd allocation, freed with its owner (weights, KV, workspaces).
//   DeviceArena: a bump allocator over one DeviceBuffer, reset at the start of every step, so
//                the step loop never calls cudaMalloc. Invariant: used_ <= buffer_.bytes().
//   CudaStream: the stream a runner's work is queued on, with its cuBLAS handle.
// Every CUDA failure here aborts with the runtime's message (a device fault is no user error);
// out-of-memory at load time is returned as an Error the user can act on.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"
#include "base/step_arena.h"

namespace moeserve::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Result<DeviceBuffer> allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A StepArena over a device buffer it owns (the per-step workspace).
class DeviceArena : public StepArena {
 public:
  DeviceArena() = default;
  static Result<DeviceArena> create(size_t bytes);

 private:
  DeviceBuffer buffer_;
};

// Page-locked host memory (for async copies of step metadata and logits).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static Result<PinnedBuffer> allocate(size_t bytes);
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class CudaStream {
 public:
  static Result<CudaStream> create(int device_index);
  CudaStream(CudaStream&& other) noexcept;
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream();

  void* stream() const { return stream_; }  // cudaStream_t
  void* blas() const { return blas_; }      // cublasHandle_t
  void synchronize() const;

 private:
  CudaStream() = default;
  void* stream_ = nullptr;
  void* blas_ = nullptr;
  void* blas_workspace_ = nullptr;
};

// Elapsed device time between two points of a stream (cudaEvent pair).
class EventTimer {
 public:
  EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  ~EventTimer();
  void start(void* stream);
  void stop(void* stream);
  double seconds() const;  // waits for the stop event

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// Copies (async on `stream`; the host side must stay valid until the stream reaches them).
void copy_to_device(void* dst, const void* src, size_t bytes, void* stream);
void copy_to_host(void* dst, const void* src, size_t bytes, void* stream);
void copy_device(void* dst, const void* src, size_t bytes, void* stream);
void fill_zero(void* dst, size_t bytes, void* stream);
void synchronize_stream(void* stream);

// Free and total device memory now (cudaMemGetInfo).
struct MemoryInfo {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};
MemoryInfo memory_info();

// Aborts with the CUDA runtime's message for the last launch error, naming `what`.
void check_last_error(const char* what);

}  // namespace moeserve::cuda
