// float4 helpers of the row kernels' vector paths (rms_norm, the MoE combine, row gathers,
// embedding): arithmetic, bf16x4 packing, the normed store, and the host-side alignment test.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

__device__ __forceinline__ float4 operator+(float4 a, float4 b) { return {a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w}; }
__device__ __forceinline__ float4 operator*(float s, float4 a) { return {s * a.x, s * a.y, s * a.z, s * a.w}; }
__device__ __forceinline__ float sum_of_squares(float4 v) { return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w; }

// Four values rounded as float_to_bf16_bits, x in the lowest 16 bits (4 consecutive bf16 in memory).
__device__ __forceinline__ uint2 to_bf16x4(float4 v) {
  return make_uint2(uint32_t(float_to_bf16_bits(v.x)) | uint32_t(float_to_bf16_bits(v.y)) << 16,
                    uint32_t(float_to_bf16_bits(v.z)) | uint32_t(float_to_bf16_bits(v.w)) << 16);
}

// 4 consecutive bf16 (one 8-byte load) widened to float32.
__device__ __forceinline__ float4 from_bf16x4(uint2 w) {
  return {__uint_as_float(w.x << 16), __uint_as_float(w.x & 0xffff0000u), __uint_as_float(w.y << 16),
          __uint_as_float(w.y & 0xffff0000u)};
}

// RMSNorm's output for float4 i of a row: v · inv_rms · weight[4i .. 4i + 3] (bf16), stored as
// float4 i of out_f32 and as 4 bf16 of out_bf16 (either may be null).
__device__ __forceinline__ void store_normed(float4 v, float inv_rms, const uint16_t* weight, int i, float* out_f32,
                                             uint16_t* out_bf16) {
  const float4 w = from_bf16x4(reinterpret_cast<const uint2*>(weight)[i]);
  const float4 value = {v.x * inv_rms * w.x, v.y * inv_rms * w.y, v.z * inv_rms * w.z, v.w * inv_rms * w.w};
  if (out_f32 != nullptr) reinterpret_cast<float4*>(out_f32)[i] = value;
  if (out_bf16 != nullptr) reinterpret_cast<uint2*>(out_bf16)[i] = to_bf16x4(value);
}

inline bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace moeserve::cuda
