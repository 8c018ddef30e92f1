// Device helpers shared by the kernels in kernels/cuda: stream access, launch checks, bf16
// conversions that round exactly as the CPU reference (base/dtype.h) does, warp reductions.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "kernels/ops.h"

namespace moeserve::cuda {

inline cudaStream_t stream_of(const GpuExec& exec) { return static_cast<cudaStream_t>(exec.stream); }

inline void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    std::fprintf(stderr, "moeserve: CUDA kernel %s failed to launch: %s\n", kernel, cudaGetErrorString(status));
    std::abort();
  }
}

// Programmatic dependent launch (sm_90): a kernel launched by launch_dependent() may be
// scheduled while the kernel before it on the stream is still finishing, which hides the gap
// between the many small kernels of a decode step. Such a kernel must call
// start_after_prior_grids() first thing, before touching any memory: it waits until the prior
// kernel has finished and its writes are visible (so every read-after-write and
// write-after-read hazard is covered), then lets the next kernel be scheduled early in turn.
__device__ __forceinline__ void start_after_prior_grids() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

template <typename... Params, typename... Args>
void launch_dependent(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                      const GpuExec& exec, Args&&... args) {
  // MOESERVE_DISABLE_PDL=1 launches in plain stream order (for A/B measurements and as a fallback).
  static const bool allowed = std::getenv("MOESERVE_DISABLE_PDL") == nullptr;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = allowed ? 1 : 0;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream_of(exec);
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t status = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (status != cudaSuccess) {
    std::fprintf(stderr, "moeserve: CUDA kernel %s failed to launch: %s\n", kernel_name, cudaGetErrorString(status));
    std::abort();
  }
}

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest even, NaN kept quiet (as f32_to_bf16 in base/dtype.h).
__device__ __forceinline__ uint16_t float_to_bf16_bits(float value) {
  const uint32_t word = __float_as_uint(value);
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>((word + rounding) >> 16);
}

// x ≈ hi + lo, both bf16: hi is x rounded, lo the rounded remainder (about 16 mantissa bits in all).
// split_bf16 rounds exactly as float_to_bf16_bits (stored results); the pair helpers below are
// for tensor-core operands, where a NaN's payload does not matter.
struct Bf16Split {
  uint16_t hi;
  uint16_t lo;
};
__device__ __forceinline__ Bf16Split split_bf16(float x) {
  const uint16_t hi = float_to_bf16_bits(x);
  return {hi, float_to_bf16_bits(x - bf16_bits_to_float(hi))};
}

// Two floats rounded to nearest even by one cvt.rn.bf16x2 (x0 in the low 16 bits, as pack_bf16):
// the same bits as float_to_bf16_bits for every non-NaN value, NaN made canonical.
__device__ __forceinline__ uint32_t bf16x2_bits(float x0, float x1) {
  uint32_t bits;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(bits) : "f"(x1), "f"(x0));
  return bits;
}

// The hi + lo split of two floats (split_bf16 of each), packed as bf16x2_bits: three conversions
// and two subtractions where split_bf16 takes a dozen integer operations per value.
struct Bf16x2Split {
  uint32_t hi;
  uint32_t lo;
};
__device__ __forceinline__ Bf16x2Split split_bf16x2(float x0, float x1) {
  const uint32_t hi = bf16x2_bits(x0, x1);
  const float back0 = __uint_as_float(hi << 16), back1 = __uint_as_float(hi & 0xffff0000u);
  return {hi, bf16x2_bits(x0 - back0, x1 - back1)};
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float value, float* scratch /* [32] shared */) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  value = warp_sum(value);
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float total = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(total);
}

// Grouped kernels launched with fewer grid rows than groups (as many as can have rows): grid
// row y takes the y-th group with rows (offsets [groups + 1]), or −1 when fewer have rows.
// Every thread of the block gets it; `scratch` is one int of shared memory.
__device__ __forceinline__ int nth_nonempty_group(const int32_t* offsets, int groups, int y, int* scratch) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int found = -1;
    for (int base = 0, seen = 0; base < groups && found < 0; base += 32) {
      const int g = base + lane;
      const bool nonempty = g < groups && offsets[g + 1] > offsets[g];
      const unsigned ballot = __ballot_sync(0xffffffffu, nonempty);
      const bool hit = nonempty && seen + __popc(ballot & ((1u << lane) - 1u)) == y;
      const unsigned hits = __ballot_sync(0xffffffffu, hit);
      if (hits != 0) found = base + __ffs(hits) - 1;
      seen += __popc(ballot);
    }
    if (lane == 0) *scratch = found;
  }
  __syncthreads();
  return *scratch;
}

// The gated activation of a SwiGLU (ops::GluParams): silu(g) · u, or GPT-OSS's clamped form.
__device__ __forceinline__ float glu(float g, float u, const ops::GluParams& params) {
  if (!params.clamped) return g / (1.0f + expf(-g)) * u;
  const float gate = fminf(g, params.limit);
  const float up = fminf(fmaxf(u, -params.limit), params.limit);
  return (up + 1.0f) * (gate / (1.0f + expf(-params.alpha * gate)));
}

// A GEMM's bias of output column `col` of group `group` (GemmArgs::bias or bias_f32, group g's
// at g · bias_group_stride), 0 without one.
__device__ __forceinline__ float gemm_bias(const GemmArgs& args, int group, int col) {
  const int64_t at = int64_t(group) * args.bias_group_stride + col;
  if (args.bias_f32 != nullptr) return args.bias_f32[at];
  return args.bias != nullptr ? bf16_bits_to_float(args.bias[at]) : 0.0f;
}

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace moeserve::cuda
