// CUDA runtime implementations of device_memory.h (allocation, pinned memory, stream + cuBLAS
// handle, events). Host code only, so it is compiled by the C++ compiler.
#include "device/cuda/device_memory.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace moeserve::cuda {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "moeserve: CUDA %s failed: %s\n", what, cudaGetErrorString(status));
    std::abort();
  }
}

void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: cuBLAS %s failed: %d\n", what, static_cast<int>(status));
    std::abort();
  }
}

constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

}  // namespace

Result<DeviceBuffer> DeviceBuffer::allocate(size_t bytes) {
  DeviceBuffer buffer;
  if (bytes == 0) return std::move(buffer);
  const cudaError_t status = cudaMalloc(&buffer.data_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state
    return make_error("cannot allocate {:.1f} MiB of GPU memory: {}", static_cast<double>(bytes) / (1 << 20),
                      cudaGetErrorString(status));
  }
  buffer.bytes_ = bytes;
  return std::move(buffer);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

Result<DeviceArena> DeviceArena::create(size_t bytes) {
  DeviceArena arena;
  MS_ASSIGN_OR_RETURN(arena.buffer_, DeviceBuffer::allocate(bytes));
  static_cast<StepArena&>(arena) = StepArena(arena.buffer_.data(), arena.buffer_.bytes());
  return std::move(arena);
}


Result<PinnedBuffer> PinnedBuffer::allocate(size_t bytes) {
  PinnedBuffer buffer;
  const cudaError_t status = cudaMallocHost(&buffer.data_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return make_error("cannot allocate {} bytes of pinned host memory: {}", bytes, cudaGetErrorString(status));
  }
  buffer.bytes_ = bytes;
  return std::move(buffer);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}

Result<CudaStream> CudaStream::create(int device_index) {
  if (cudaError_t status = cudaSetDevice(device_index); status != cudaSuccess) {
    return make_error("cannot use CUDA device {}: {}", device_index, cudaGetErrorString(status));
  }
  CudaStream stream;
  cudaStream_t raw = nullptr;
  check(cudaStreamCreateWithFlags(&raw, cudaStreamNonBlocking), "cudaStreamCreate");
  stream.stream_ = raw;
  cublasHandle_t handle = nullptr;
  check_blas(cublasCreate(&handle), "cublasCreate");
  check_blas(cublasSetStream(handle, raw), "cublasSetStream");
  check(cudaMalloc(&stream.blas_workspace_, kBlasWorkspaceBytes), "cudaMalloc(cuBLAS workspace)");
  check_blas(cublasSetWorkspace(handle, stream.blas_workspace_, kBlasWorkspaceBytes), "cublasSetWorkspace");
  stream.blas_ = handle;
  return std::move(stream);
}

CudaStream::CudaStream(CudaStream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)),
      blas_(std::exchange(other.blas_, nullptr)),
      blas_workspace_(std::exchange(other.blas_workspace_, nullptr)) {}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  std::swap(stream_, other.stream_);
  std::swap(blas_, other.blas_);
  std::swap(blas_workspace_, other.blas_workspace_);
  return *this;
}

CudaStream::~CudaStream() {
  if (blas_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(blas_));
  if (blas_workspace_ != nullptr) cudaFree(blas_workspace_);
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void CudaStream::synchronize() const { check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "sync"); }

EventTimer::EventTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  start_ = a;
  stop_ = b;
}

EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start(void* stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(start_), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}

void EventTimer::stop(void* stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(stop_), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}

double EventTimer::seconds() const {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)), "cudaEventSynchronize");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)),
        "cudaEventElapsedTime");
  return ms * 1e-3;
}

void copy_to_device(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)), "copy H2D");
}

void copy_to_host(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)), "copy D2H");
}

void copy_device(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)), "copy D2D");
}

void fill_zero(void* dst, size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemsetAsync(dst, 0, bytes, static_cast<cudaStream_t>(stream)), "memset");
}

void synchronize_stream(void* stream) {
  check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

MemoryInfo memory_info() {
  MemoryInfo info;
  check(cudaMemGetInfo(&info.free_bytes, &info.total_bytes), "cudaMemGetInfo");
  return info;
}

void check_last_error(const char* what) { check(cudaGetLastError(), what); }

}  // namespace moeserve::cuda
