// Block-scaled FP8 weights (DeepSeek-V3's, Qwen3-FP8's: e4m3, a float32 scale per 128 × 128 block,
// as the plan expands it per row) decoded in registers by the GEMM kernels that stream them. Every
// e4m3 value is an fp16 value, so the decoding is exact; the block scale is applied to the
// products' partial sums.
#pragma once

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

}  // namespace moeserve::cuda
