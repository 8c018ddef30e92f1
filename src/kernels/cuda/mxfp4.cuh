// MXFP4 weights (GPT-OSS's experts as published) decoded in registers by the GEMM kernels that
// stream them: e2m1 codes, two per byte (the even K in the low nibble), each block of 32 along K
// scaled by one e8m0 byte, 2^(e8m0 − 127). Both decodings below are exact.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace moeserve::cuda {

// small_gemm (float32 FMAs): 16 consecutive weights (8 bytes) as float times 2^-14 — each e2m1
// code placed in an fp16's sign, low exponent and top mantissa bits is its value · 2^-14 exactly,
// e2m1's subnormal 0.5 included — and mxfp4_factor's 2^14 · 2^(e8m0 − 127) restores them.
struct Mx16 {
  float v[16];
};
__device__ __forceinline__ Mx16 unpack_mxfp4(uint2 raw) {
  const uint32_t words[2] = {raw.x, raw.y};
  Mx16 out;
#pragma unroll
  for (int w = 0; w < 2; ++w)
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const uint32_t t = words[w] >> (8 * b);
      const uint32_t h = ((t & 0x7u) << 9) | ((t & 0x8u) << 12) | ((t & 0x70u) << 21) | ((t & 0x80u) << 24);
      const float2 pair = __half22float2(*reinterpret_cast<const __half2*>(&h));
      out.v[8 * w + 2 * b] = pair.x;
      out.v[8 * w + 2 * b + 1] = pair.y;
    }
  return out;
}
__device__ __forceinline__ float mxfp4_factor(uint8_t e8m0) {
  return e8m0 <= 240 ? __uint_as_float((uint32_t(e8m0) + 14u) << 23) : ldexpf(1.0f, int(e8m0) - 113);
}

// mma_gemm (bf16 tensor-core operands): the same 16 weights as 8 bf16 pairs in K order (pair i:
// bytes i's two codes), with their block's scale applied. Each code is first placed in a bf16's
// sign, low exponent and top mantissa bits, its value · 2^-126 (the subnormal 0.5 becomes bf16's
// subnormal 2^-127, which bf16 multiplies keep), then multiplied by 2^(e8m0 − 1) — by 2^127 and
// 2^(e8m0 − 128) for scales above 2, whose single factor bf16 cannot hold.
__device__ __forceinline__ void mxfp4_to_bf16x16(uint2 codes, uint32_t e8m0, uint4 (&out)[2]) {
  const auto pair_of = [](uint32_t exponent) {
    const uint32_t bits = (exponent << 7) | (exponent << 23);
    return *reinterpret_cast<const __nv_bfloat162*>(&bits);
  };
  const __nv_bfloat162 factor = pair_of(e8m0 <= 128 ? e8m0 + 126 : 254u);
  uint32_t words[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t t = (i < 4 ? codes.x : codes.y) >> (8 * (i & 3));
    const uint32_t bits = ((t & 0x8u) << 12) | ((t & 0x7u) << 6) | ((t & 0x80u) << 24) | ((t & 0x70u) << 18);
    __nv_bfloat162 pair = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&bits), factor);
    if (e8m0 > 128) pair = __hmul2(pair, pair_of(e8m0 - 1));
    words[i] = *reinterpret_cast<const uint32_t*>(&pair);
  }
  out[0] = make_uint4(words[0], words[1], words[2], words[3]);
  out[1] = make_uint4(words[4], words[5], words[6], words[7]);
}

}  // namespace moeserve::cuda
