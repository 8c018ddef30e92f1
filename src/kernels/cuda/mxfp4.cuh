// MXFP4 weights (GPT-OSS's experts as published) decoded in registers by the GEMM kernels that
// stream them: e2m1 codes, two per byte (the even K in the low nibble), each block of 32 along K
// scaled by one e8m0 byte, 2^(e8m0 − 127). The decoding is exact.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace moeserve::cuda {

// 16 consecutive weights (8 bytes of codes) as 8 bf16 pairs in K order, unscaled. Byte
// permutes do the work: the high and the low byte of each code's magnitude (3 bits: 0, 0.5, 1,
// 1.5, 2, 3, 4, 6) are looked up four codes at a time in two 8-byte tables (the magnitudes as
// selectors), the codes' sign bits are moved to bit 7 of the high bytes, and the bytes are
// interleaved into pairs: about 2 instructions a weight.
__device__ __forceinline__ void mxfp4_bf16_pairs(uint2 codes, uint32_t (&pairs)[8]) {
  const uint32_t words[2] = {codes.x, codes.y};
#pragma unroll
  for (int w = 0; w < 2; ++w) {
    const uint32_t magnitudes = words[w] & 0x77777777u;
#pragma unroll
    for (int g = 0; g < 2; ++g) {  // codes 4g .. 4g + 3 of the word (its bytes 2g, 2g + 1)
      const uint32_t selector = magnitudes >> (16 * g);
      const uint32_t high = __byte_perm(0x3F3F3F00u, 0x40404040u, selector);  // 0x00, 0x3F ×3, 0x40 ×4
      const uint32_t low = __byte_perm(0xC0800000u, 0xC0804000u, selector);   // 00 00 80 C0 00 40 80 C0
      // sign of code k (bit 3 of its nibble) to bit 7 of byte k: bytes [b, b, b', b'] of the
      // word's two bytes, odd codes' signs already in place, even codes' 4 bits up
      const uint32_t spread = __byte_perm(words[w], 0u, g == 0 ? 0x1100u : 0x3322u);
      const uint32_t signs = (spread & 0x80008000u) | ((spread << 4) & 0x00800080u);
      const uint32_t signed_high = high | signs;
      pairs[4 * w + 2 * g] = __byte_perm(low, signed_high, 0x5140u);
      pairs[4 * w + 2 * g + 1] = __byte_perm(low, signed_high, 0x7362u);
    }
  }
}

// A block's scale, 2^(e8m0 − 127), as float (0: 2^-127, a float subnormal) and as a bf16 pair.
__device__ __forceinline__ float mxfp4_scale(uint32_t e8m0) {
  return __uint_as_float(e8m0 == 0 ? 0x00400000u : e8m0 << 23);
}
__device__ __forceinline__ __nv_bfloat162 mxfp4_scale_bf16x2(uint32_t e8m0) {
  const uint32_t half = e8m0 == 0 ? 0x0040u : e8m0 << 7;
  const uint32_t bits = half | (half << 16);
  return *reinterpret_cast<const __nv_bfloat162*>(&bits);
}

// mma_gemm's A operand: the 16 weights as bf16 pairs with the scale applied (bf16 multiplies of
// a code's value by a power of two are exact, subnormal results included).
__device__ __forceinline__ void mxfp4_to_bf16x16(uint2 codes, uint32_t e8m0, uint4 (&out)[2]) {
  uint32_t pairs[8];
  mxfp4_bf16_pairs(codes, pairs);
  const __nv_bfloat162 scale = mxfp4_scale_bf16x2(e8m0);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const __nv_bfloat162 scaled = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&pairs[i]), scale);
    pairs[i] = *reinterpret_cast<const uint32_t*>(&scaled);
  }
  out[0] = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
  out[1] = make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
}

}  // namespace moeserve::cuda
