// Block-scaled FP8 weights (DeepSeek-V3's, Qwen3-FP8's: e4m3, a float32 scale per 128 × 128 block,
// as the plan expands it per row) decoded in registers by the GEMM kernels that stream them. Every
// e4m3 value is an fp16 value, so the decoding is exact; the block scale is applied to the
// products' partial sums.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace moeserve::cuda {

// 16 consecutive e4m3 weights (16 bytes, the lowest address first) as float.
__device__ __forceinline__ void fp8_e4m3_to_float16(uint4 raw, float (&out)[16]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int w = 0; w < 4; ++w)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2_raw pair =
          __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(words[w] >> (16 * h)), __NV_E4M3);
      const float2 values = __half22float2(*reinterpret_cast<const __half2*>(&pair));
      out[4 * w + 2 * h] = values.x;
      out[4 * w + 2 * h + 1] = values.y;
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
