// Tensor-core helpers shared by the kernels that use mma.sync (mma_gemm, the prefill attention):
// the m16n8k16 bf16 and m16n8k32 e4m3 MMAs, bf16 packing and ldmatrix (the hi + lo split is in common.cuh).
//
// Fragment layout of mma.m16n8k16 (g = lane / 4, t = lane % 4), as the PTX ISA defines it:
//   A [16 × 16] row-major, 4 registers of 2 bf16: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same
//     cols), a2 (row g, cols 2t+8, 2t+9), a3 (row g+8, cols 2t+8, 2t+9);
//   B [16 × 8], 2 registers: b0 (rows 2t, 2t+1 of col g), b1 (rows 2t+8, 2t+9 of col g);
//   C/D [16 × 8] float32: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols).
// The lower-indexed element sits in a register's low 16 bits.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

// d += a · b over one 16 × 8 × 16 tile, float32 accumulation.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_bf16(d, a[0], a[1], a[2], a[3], b0, b1);
}

// d += a · b over one 16 × 8 × 32 tile of e4m3 values, float32 accumulation (sm_89+). The
// fragments are those above with 4 e4m3 per register (the lower K in the lower byte) where bf16
// has 2: a0 (row g, K 4t..4t+3), a1 (row g+8, same K), a2 (row g, K 4t+16..4t+19), a3 (row g+8,
// same K); b0 (K 4t..4t+3 of col g), b1 (K 4t+16..4t+19 of col g).
__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// Four 8 × 8 bf16 matrices from shared memory, transposed: lanes 8i..8i+7 give the row
// addresses (16 bytes each, 16-byte aligned) of matrix i, whose transpose lands in r[i] in the
// B-fragment layout above (a matrix of 8 K-rows × 8 N-columns stored row-major → b0 or b1).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

}  // namespace moeserve::cuda
