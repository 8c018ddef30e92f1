// e4m3 in registers: block-scaled FP8 weights (DeepSeek-V3's, Qwen3-FP8's: a float32 scale per 128 ×
// 128 block, as the plan expands it per row) decoded by the GEMM kernels that stream them, and
// the packing of quantized activations and of an fp8 KV cache. Every e4m3 value is an fp16 value,
// so the decoding is exact; the block scale is applied to the products' partial sums.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace moeserve::cuda {

// 4 consecutive e4m3 values (a word, the lowest byte first) as float, exactly.
__device__ __forceinline__ float4 fp8_e4m3x4_to_float4(uint32_t word) {
  const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word), __NV_E4M3);
  const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> 16), __NV_E4M3);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&lo));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&hi));
  return make_float4(a.x, a.y, b.x, b.y);
}

// 4 floats as e4m3 codes in a word (the first in the lowest byte): nearest even, saturating at
// ±448, as the CPU's f32_to_f8e4m3 rounds.
__device__ __forceinline__ uint32_t float4_to_fp8_e4m3x4(float4 v) {
  const float values[4] = {v.x, v.y, v.z, v.w};
  uint32_t word = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) word |= uint32_t(__nv_cvt_float_to_fp8(values[i], __NV_SATFINITE, __NV_E4M3)) << (8 * i);
  return word;
}

// Dynamic FP8 activation quantization of one group of 128 values held by a warp, 4 a lane, as
// ops::quantize_activations_fp8 does: scale = amax / 448 (with ue8m0, DeepSeek-V3.1's scale_fmt,
// the power of two at or above it; 1 for an all-zero group, zero at any scale), each value divided
// by it and rounded to e4m3. Returns the lane's 4 codes (a word, the first in the lowest byte);
// every lane gets the group's scale. All 32 lanes must call it.
__device__ __forceinline__ uint32_t quantize_fp8_warp_group(const float (&v)[4], bool ue8m0, float& scale) {
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
  for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  scale = 1.0f;
  if (amax > 0.0f) {
    scale = amax / 448.0f;
    const uint32_t bits = __float_as_uint(scale);
    if (ue8m0 && (bits & 0x7fffffu) != 0) scale = __uint_as_float((bits & 0x7f800000u) + 0x800000u);
  }
  return float4_to_fp8_e4m3x4(make_float4(v[0] / scale, v[1] / scale, v[2] / scale, v[3] / scale));
}

// 16 consecutive e4m3 weights (16 bytes, the lowest address first) as float.
__device__ __forceinline__ void fp8_e4m3_to_float16(uint4 raw, float (&out)[16]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const float4 values = fp8_e4m3x4_to_float4(words[w]);
    out[4 * w] = values.x;
    out[4 * w + 1] = values.y;
    out[4 * w + 2] = values.z;
    out[4 * w + 3] = values.w;
  }
}

// The same 16 weights times `scale` as bf16, packed as two uint4 of 8 (the lower K in the low half
// of each word), the layout mma.cuh's fragments use. Exact at scale 1 (e4m3's 3 mantissa bits and
// exponent range fit bf16); otherwise each product rounded to nearest even once.
__device__ __forceinline__ void fp8_e4m3_to_bf16x16(uint4 raw, uint4 (&out)[2], float scale = 1.0f) {
  float values[16];
  fp8_e4m3_to_float16(raw, values);
  uint32_t words[8];
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(values[2 * w] * scale, values[2 * w + 1] * scale);
    words[w] = *reinterpret_cast<const uint32_t*>(&pair);
  }
  out[0] = make_uint4(words[0], words[1], words[2], words[3]);
  out[1] = make_uint4(words[4], words[5], words[6], words[7]);
}

}  // namespace moeserve::cuda
