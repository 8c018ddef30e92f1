// CUDA op: weight-streaming GEMM on tensor cores for batches of a few to a few hundred rows
// (the grouped MoE experts and the dense projections of decode steps above kSmallTile rows).
// Same contract as small_gemm (SmallGemmArgs: float32 activations, bf16 weights, optional
// groups read from device offsets, SwiGLU fused), computed with mma.sync m16n8k16:
//
//   outᵀ [features, rows] = W [features, K] · xᵀ [K, rows]
//
// Weight rows are the MMA's M side (16 per tile), activation rows its N side (8 per tile), so
// a group of 3 rows wastes nothing on the weight stream, which is what bounds the kernel. A
// block takes 64 weight rows (4 warps × 16) and up to 16 activation rows of one group. Each
// warp loads its weight fragments straight from global memory into registers (16-byte loads,
// each thread owning 16 consecutive K of a row: the K order inside a 64-wide chunk is permuted
// identically for A and B, which leaves the dot products unchanged) and the next chunk's are in
// flight while the current one is multiplied. Activations are staged per chunk in shared
// memory as bf16 hi + lo halves (x ≈ hi + lo: two MMAs per weight fragment give float32-like
// results while each weight byte is still read once) or as bf16 alone in the plain mode.
// Groups with no rows exit at once, so experts no token chose cost nothing and no host round
// trip is needed (CUDA-graph safe).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kChunk = 64;            // K per pass
constexpr int kXStride = kChunk + 8;  // bf16 per staged row: the 16-byte skew makes the 16-byte reads conflict-free

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word_of(const uint4 (&v)[2], int w) {
  const uint4 q = v[w >> 2];
  switch (w & 3) {
    case 0:
      return q.x;
    case 1:
      return q.y;
    case 2:
      return q.z;
    default:
      return q.w;
  }
}

__device__ __forceinline__ uint32_t pack_bf16(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// One thread's weights for one chunk: rows g and g + 8 of each of its kTiles m-tiles, 16 K each.
template <int kTiles>
struct WeightFrags {
  uint4 row[kTiles][2][2];  // [tile][row g / g+8][K 0..7 / 8..15 of the thread's span]
};

// kTiles m-tiles per warp: 1, or 2 with SwiGLU (tile 0 = gate rows, tile 1 = the matching up rows).
// kNTiles: activation rows per block = 8 · kNTiles. kSplit: hi + lo activation halves.
template <int kNTiles, bool kSwiglu, bool kSplit>
__global__ void __launch_bounds__(kWarps * 32) mma_gemm_kernel(SmallGemmArgs args) {
  constexpr int kTiles = kSwiglu ? 2 : 1;
  constexpr int kRows = 8 * kNTiles;
  constexpr int kHalves = kSplit ? 2 : 1;
  __shared__ __align__(16) uint16_t xs[2][kHalves][kRows][kXStride];

  const bool grouped = args.offsets != nullptr;
  const int group = grouped ? blockIdx.z : 0;
  const int group_begin = grouped ? args.offsets[group] : 0;
  const int group_end = grouped ? args.offsets[group + 1] : args.rows;
  const int tile_begin = group_begin + blockIdx.x * kRows;
  if (tile_begin >= group_end) return;  // uniform: an expert no token chose, or past its rows
  const int rows_here = min(kRows, group_end - tile_begin);
  const int active_ntiles = (rows_here + 7) / 8;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;  // fragment row (A) / column (B)
  const int t = lane & 3;   // which 16-wide K span of the chunk the thread owns
  const uint16_t* weight = args.weight + group * args.group_stride;
  // Feature (output column) base of this warp's 16 rows.
  const int feature0 = (blockIdx.y * kWarps + warp) * 16;
  int weight_row[kTiles][2];
  bool row_ok[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int feature = feature0 + g + 8 * r;
    row_ok[r] = feature < args.n;
#pragma unroll
    for (int i = 0; i < kTiles; ++i) weight_row[i][r] = feature + i * args.n;  // tile 1: the up rows
  }

  auto load_weights = [&](WeightFrags<kTiles>& w, int k0) {
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int k = k0 + 16 * t + 8 * h;
          w.row[i][r][h] = row_ok[r] && k < args.k
                               ? __ldg(reinterpret_cast<const uint4*>(weight + int64_t(weight_row[i][r]) * args.k + k))
                               : make_uint4(0u, 0u, 0u, 0u);
        }
  };
  // Activations: kRows × kChunk floats as float4s, kRows / 8 per thread.
  constexpr int kXLoads = kRows * (kChunk / 4) / (kWarps * 32);
  auto load_x = [&](float4 (&x)[kXLoads], int k0) {
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int index = threadIdx.x + j * kWarps * 32;
      const int m = index / (kChunk / 4);
      const int k = k0 + 4 * (index % (kChunk / 4));
      x[j] = m < rows_here && k < args.k
                 ? *reinterpret_cast<const float4*>(args.x + int64_t(tile_begin + m) * args.k + k)
                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  };
  auto store_x = [&](const float4 (&x)[kXLoads], int buffer) {
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int index = threadIdx.x + j * kWarps * 32;
      const int m = index / (kChunk / 4);
      const int k = 4 * (index % (kChunk / 4));
      const float v[4] = {x[j].x, x[j].y, x[j].z, x[j].w};
      uint16_t hi[4], lo[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        hi[e] = float_to_bf16_bits(v[e]);
        lo[e] = float_to_bf16_bits(v[e] - bf16_bits_to_float(hi[e]));
      }
      *reinterpret_cast<uint2*>(&xs[buffer][0][m][k]) = make_uint2(pack_bf16(hi[0], hi[1]), pack_bf16(hi[2], hi[3]));
      if constexpr (kSplit)
        *reinterpret_cast<uint2*>(&xs[buffer][1][m][k]) =
            make_uint2(pack_bf16(lo[0], lo[1]), pack_bf16(lo[2], lo[3]));
    }
  };

  float acc[kTiles][kNTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int chunks = (args.k + kChunk - 1) / kChunk;
  WeightFrags<kTiles> w_now, w_next;
  float4 x_next[kXLoads];
  load_weights(w_now, 0);
  load_x(x_next, 0);
  store_x(x_next, 0);
  __syncthreads();
  for (int c = 0; c < chunks; ++c) {
    const bool more = c + 1 < chunks;
    if (more) {
      load_weights(w_next, (c + 1) * kChunk);
      load_x(x_next, (c + 1) * kChunk);
    }
    const int buffer = c & 1;
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
      if (j >= active_ntiles) break;  // uniform: columns past the group's rows
      uint4 b[kHalves][2];
#pragma unroll
      for (int half = 0; half < kHalves; ++half)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          b[half][h] = *reinterpret_cast<const uint4*>(&xs[buffer][half][j * 8 + g][16 * t + 8 * h]);
#pragma unroll
      for (int s = 0; s < 4; ++s) {
#pragma unroll
        for (int i = 0; i < kTiles; ++i) {
          const uint32_t a0 = word_of(w_now.row[i][0], 2 * s), a1 = word_of(w_now.row[i][1], 2 * s);
          const uint32_t a2 = word_of(w_now.row[i][0], 2 * s + 1), a3 = word_of(w_now.row[i][1], 2 * s + 1);
#pragma unroll
          for (int half = 0; half < kHalves; ++half)
            mma_bf16(acc[i][j], a0, a1, a2, a3, word_of(b[half], 2 * s), word_of(b[half], 2 * s + 1));
        }
      }
    }
    if (more) store_x(x_next, buffer ^ 1);
    __syncthreads();
    if (more) w_now = w_next;
  }

  // acc[i][j]: (feature feature0 + g (+8 for e ≥ 2), row j·8 + 2t (+1 for odd e)).
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) {
    if (j >= active_ntiles) break;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int m = j * 8 + 2 * t + (e & 1);
      const int r = e >> 1;
      if (m >= rows_here || !row_ok[r]) continue;
      const int feature = feature0 + g + 8 * r;
      float value = acc[0][j][e];
      if constexpr (kSwiglu) {
        value = value / (1.0f + expf(-value)) * acc[kTiles - 1][j][e];
      } else if (args.bias != nullptr) {
        value += bf16_bits_to_float(args.bias[feature]);
      }
      args.out[int64_t(tile_begin + m) * args.n + feature] = value;
    }
  }
}

template <int kNTiles, bool kSwiglu, bool kSplit>
void launch(const GpuExec& exec, const SmallGemmArgs& args) {
  // Row tiles vary fastest, so the tiles sharing a block of weight rows run together and all
  // but the first read those weights from L2.
  const dim3 grid(ceil_div(args.rows, 8 * kNTiles), ceil_div(args.n, kWarps * 16),
                  args.offsets != nullptr ? args.groups : 1);
  mma_gemm_kernel<kNTiles, kSwiglu, kSplit><<<grid, kWarps * 32, 0, stream_of(exec)>>>(args);
  check_launch("mma_gemm");
}

template <bool kSwiglu, bool kSplit>
void dispatch_rows(const GpuExec& exec, const SmallGemmArgs& args) {
  // Row tiles of 8 or 16 rows: larger tiles need more registers, fewer blocks fit an SM and
  // fewer weight bytes are in flight (measured: 64-row tiles streamed at 1.6 TB/s, 8-row tiles
  // at 3.9 TB/s on an H200). A group with more rows takes several tiles (grid x).
  if (args.rows <= 8) {
    launch<1, kSwiglu, kSplit>(exec, args);
  } else {
    launch<2, kSwiglu, kSplit>(exec, args);
  }
}

}  // namespace

bool mma_gemm_supported(int k) { return k % 8 == 0; }

void mma_gemm(const GpuExec& exec, const SmallGemmArgs& args, bool split) {
  if (args.rows == 0 || args.n == 0) return;
  if (!mma_gemm_supported(args.k)) {
    std::fprintf(stderr, "moeserve: mma_gemm needs K %% 8 == 0, got %d\n", args.k);
    std::abort();
  }
  if (args.swiglu) {
    split ? dispatch_rows<true, true>(exec, args) : dispatch_rows<true, false>(exec, args);
  } else {
    split ? dispatch_rows<false, true>(exec, args) : dispatch_rows<false, false>(exec, args);
  }
}

}  // namespace moeserve::cuda
