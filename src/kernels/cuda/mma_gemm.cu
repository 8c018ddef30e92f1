// CUDA op: weight-streaming GEMM on tensor cores for batches of a few to a few hundred rows
// (the grouped MoE experts and the dense projections of decode steps above kSmallTile rows).
// Same contract as small_gemm (GemmArgs: float32 activations, bf16, MXFP4 or FP8 weights, optional
// groups read from device offsets, SwiGLU fused), computed with mma.sync m16n8k16:
//
//   outᵀ [features, rows] = W [features, K] · xᵀ [K, rows]
//
// Weight rows are the MMA's M side (16 per tile), activation rows its N side (8 per tile), so a
// group of 3 rows wastes nothing on the weight stream, which is what bounds the kernel. A block
// takes 64 weight rows (4 warps × 16) and up to 16 activation rows of one group (32 when groups
// average 16 rows or more). Each warp loads its weight fragments straight from global memory into
// registers (16-byte loads, each thread owning 16 consecutive K of a row: the K order inside a
// 64-wide chunk is permuted identically for A and B, which leaves the dot products unchanged) and
// the next chunk's are in flight while the current one is multiplied (FP8 weights: two 64-K chunks a
// pass, so a pass loads as many weight bytes as bf16's one). Activations are staged per pass in
// shared memory as bf16 hi + lo halves (x ≈ hi + lo: two MMAs per weight fragment give
// float32-like results while each weight byte is still read once) or as bf16 alone in the plain
// mode. With fp8.quantize_activations (the bf16 mode's FP8 GEMMs, W8A8 as prefill's linear_fp8),
// a pass stages each row's 128 K as e4m3 codes with one scale, quantized in the kernel, and FP8
// weights go straight into m16n8k32 e4m3 MMAs: no weight decoding, half the MMAs. Groups with no
// rows exit at once, so experts no token chose cost nothing and no host round
// trip is needed (CUDA-graph safe).
#include <algorithm>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/mxfp4.cuh"
#include "kernels/cuda/split_k.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kChunk = 64;  // K per sub-chunk (each thread owns 16 K of a row in one)
// Sub-chunks per pass: FP8 weights take two, so each thread loads as many weight bytes a pass as
// bf16's one. The loop's passes (activation staging and a barrier each), not only its bytes, bound
// it: H100, Mixtral gate/up at 8 tokens, bf16 667 us, FP8 one chunk a pass 522, two 379.
constexpr int kFp8Subchunks = 2;

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

// The weights' format: bf16; MXFP4 (GPT-OSS's experts); block-scaled FP8 e4m3 (DeepSeek-V3's,
// Qwen3-FP8's) decoded to bf16 (W8A16), or multiplied on FP8 tensor cores by activations the
// kernel quantizes (kFp8A8, W8A8: fp8.quantize_activations).
enum class Format { kBf16, kMxfp4, kFp8, kFp8A8 };
__host__ __device__ constexpr bool fp8_weights(Format f) { return f == Format::kFp8 || f == Format::kFp8A8; }

// One thread's weights for one chunk: rows g and g + 8 of each of its kTiles m-tiles, 16 K each.
template <int kTiles, Format kFormat = Format::kBf16>
struct WeightFrags {
  uint4 row[kTiles][2][2];  // [tile][row g / g+8][K 0..7 / 8..15 of the thread's span]
};
// MXFP4: the same 16 K as 8 bytes of e2m1 codes and their block's e8m0 scale (a 16-K span never
// straddles a 32-K block), decoded to bf16 when the chunk is multiplied.
template <int kTiles>
struct WeightFrags<kTiles, Format::kMxfp4> {
  uint2 codes[kTiles][2];
  uint32_t e8m0[kTiles][2];
};
// FP8: the same 16 K as 16 e4m3 bytes (decoded exactly to bf16), and the row's scale of the
// sub-chunk's K block (a sub-chunk never straddles one: block and offset are multiples of kChunk),
// which multiplies the sub-chunk's partial sums; kFp8Subchunks of each per pass.
template <int kTiles>
struct WeightFrags<kTiles, Format::kFp8> {
  uint4 codes[kTiles][2][kFp8Subchunks];
  float scale[kTiles][2][kFp8Subchunks];
};
template <int kTiles>
struct WeightFrags<kTiles, Format::kFp8A8> : WeightFrags<kTiles, Format::kFp8> {};

// The activations of a pass in shared memory: bf16 (hi, and lo when split), skewed 16 bytes a row
// so that the fragments' 16-byte reads are conflict-free.
template <int kRows, int kHalves, int kPassK, Format kFormat>
struct StagedX {
  uint16_t x[2][kHalves][kRows][kPassK + 8];
};
// W8A8: the next pass's float32 rows as cp.async lands them, and the pass's 128 K as e4m3 codes
// (rows 192 bytes apart, conflict-free for the 16-byte reads of rows g and g + 1 by one
// quarter-warp) with each row's scale.
template <int kRows, int kHalves, int kPassK>
struct StagedX<kRows, kHalves, kPassK, Format::kFp8A8> {
  float raw[kRows][kPassK];
  uint8_t codes[2][kRows][kPassK + 64];
  float scale[2][kRows];
};

// kTiles m-tiles of 16 weight rows per warp: with SwiGLU 2 (tile 0 = gate rows, tile 1 = the
// matching up rows), else 1 or 2 consecutive tiles (2: twice the weight bytes in flight per
// thread). kNTiles: activation rows per block = 8 · kNTiles. kSplit: hi + lo activation halves.
// kFormat: MXFP4 weights (args.weight_mxfp4, K % 32 == 0) or FP8 (args.weight_fp8, its scale
// blocks and offset multiples of kChunk) are decoded exactly to bf16 in registers; kFp8A8 (FP8
// weights in blocks of 128 at offset 0, K % 128 == 0, no split) quantizes each row's 128 K of a
// pass to e4m3 as quantize_fp8_rows does (bf16-rounded, scale amax / 448) and multiplies the codes.
// partial != null (no SwiGLU): the K passes are cut into `splits` ranges of passes_per_split;
// blockIdx.z = group · splits + split, and the block's sums go to
// partial[split][row][feature] (partial_rows rows) for sum_partials_kernel to add up.
template <int kNTiles, int kTiles, bool kSwiglu, bool kSplit, Format kFormat>
__global__ void __launch_bounds__(kWarps * 32) mma_gemm_kernel(GemmArgs args, float* partial, int splits,
                                                               int passes_per_split, int partial_rows) {
  start_after_prior_grids();
  constexpr bool kMx = kFormat == Format::kMxfp4;
  constexpr bool kFp8 = fp8_weights(kFormat);
  constexpr bool kA8 = kFormat == Format::kFp8A8;
  static_assert(!kSwiglu || kTiles == 2);
  static_assert(!kA8 || !kSplit);
  constexpr int kWarpFeatures = kSwiglu ? 16 : 16 * kTiles;
  constexpr int kRows = 8 * kNTiles;
  constexpr int kHalves = kSplit ? 2 : 1;
  constexpr int kSubs = kFp8 ? kFp8Subchunks : 1;
  constexpr int kPassK = kSubs * kChunk;  // K per pass
  __shared__ __align__(16) StagedX<kRows, kHalves, kPassK, kFormat> xs;

  const bool grouped = args.offsets != nullptr;
  const int group = grouped ? blockIdx.z / splits : 0;
  const int split = blockIdx.z % splits;
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
  const uint16_t* weight = kFormat != Format::kBf16 ? nullptr : args.weight + group * args.group_stride;
  const uint8_t* weight_mx = kMx ? args.weight_mxfp4 + group * args.group_stride / 2 : nullptr;  // [N_w, K / 2]
  const uint8_t* scale_mx = kMx ? args.mx_scale + group * args.group_stride / 32 : nullptr;      // [N_w, K / 32]
  const uint8_t* weight_f8 = kFp8 ? args.weight_fp8 + group * args.group_stride : nullptr;       // [N_w, K]
  // [N_w, scale_cols]: row n's scale of K block (fp8.offset + k) / fp8.block
  const float* scale_f8 = kFp8 ? args.fp8.scale + group * args.scale_group_stride : nullptr;
  const int scale_cols = kFp8 ? (args.fp8.offset + args.k + args.fp8.block - 1) / args.fp8.block : 0;
  // Feature (output column) of fragment row g (+8 for r = 1) of m-tile i, and its weight row.
  const int feature0 = (blockIdx.y * kWarps + warp) * kWarpFeatures;
  auto feature_of = [&](int i, int r) { return feature0 + (kSwiglu ? 0 : 16 * i) + g + 8 * r; };
  int weight_row[kTiles][2];
  bool row_ok[kTiles][2];
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_ok[i][r] = feature_of(i, r) < args.n;
      weight_row[i][r] = feature_of(i, r) + (kSwiglu ? i * args.n : 0);  // SwiGLU tile 1: the up rows
    }

  auto load_weights = [&](WeightFrags<kTiles, kFormat>& w, int k0) {
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int k = k0 + 16 * t;
        const bool live = row_ok[i][r] && k < args.k;
        const int64_t row = weight_row[i][r];
        if constexpr (kMx) {
          w.codes[i][r] = live ? __ldg(reinterpret_cast<const uint2*>(weight_mx + row * (args.k / 2) + k / 2))
                               : make_uint2(0u, 0u);
          w.e8m0[i][r] = live ? scale_mx[row * (args.k / 32) + k / 32] : 127u;
        } else if constexpr (kFp8) {
#pragma unroll
          for (int q = 0; q < kSubs; ++q) {
            // The scale multiplies the whole sub-chunk's sums (every thread's K span): it is loaded
            // wherever the sub-chunk starts inside K, whether or not this thread's span does.
            const bool sub_live = row_ok[i][r] && k0 + q * kChunk < args.k;
            w.codes[i][r][q] = sub_live && k + q * kChunk < args.k
                                   ? __ldg(reinterpret_cast<const uint4*>(weight_f8 + row * args.k + k + q * kChunk))
                                   : make_uint4(0u, 0u, 0u, 0u);
            w.scale[i][r][q] =
                sub_live ? __ldg(scale_f8 + row * scale_cols + (args.fp8.offset + k0 + q * kChunk) / args.fp8.block)
                         : 0.0f;
          }
        } else {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            w.row[i][r][h] = live && k + 8 * h < args.k
                                 ? __ldg(reinterpret_cast<const uint4*>(weight + row * args.k + k + 8 * h))
                                 : make_uint4(0u, 0u, 0u, 0u);
          }
        }
      }
  };
  // Activations: kRows × kPassK floats as float4s, kRows · kSubs / 8 per thread.
  constexpr int kXLoads = kRows * (kPassK / 4) / (kWarps * 32);
  // W8A8: copied to xs.raw asynchronously instead (no registers held over the pass), each float4
  // by the thread that quantizes it.
  auto load_x = [&](float4(&x)[kXLoads], int k0) {
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int index = threadIdx.x + j * kWarps * 32;
      const int m = index / (kPassK / 4);
      const int k = k0 + 4 * (index % (kPassK / 4));
      if constexpr (kA8) {
        if (m < rows_here) cp_async_16(&xs.raw[m][k - k0], args.x + int64_t(tile_begin + m) * args.k + k);
      } else {
        x[j] = m < rows_here && k < args.k
                   ? *reinterpret_cast<const float4*>(args.x + int64_t(tile_begin + m) * args.k + k)
                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
  };
  auto store_x = [&](const float4(&x)[kXLoads], int buffer) {
    if constexpr (kA8) cp_async_wait_all();  // this thread's copies (the float4s it reads below)
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int index = threadIdx.x + j * kWarps * 32;
      const int m = index / (kPassK / 4);
      const int k = 4 * (index % (kPassK / 4));
      if constexpr (kA8) {
        // A row's 128 K are one warp's float4s (m = warp + 4j): one quantization group.
        static_assert(kPassK == 4 * 32);
        const float4 raw = m < rows_here ? *reinterpret_cast<const float4*>(&xs.raw[m][k]) : make_float4(0, 0, 0, 0);
        float v[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) v[e] = bf16_bits_to_float(float_to_bf16_bits(v[e]));
        float scale;
        *reinterpret_cast<uint32_t*>(&xs.codes[buffer][m][k]) = quantize_fp8_warp_group(v, args.fp8.ue8m0, scale);
        if (k == 0) xs.scale[buffer][m] = scale;
      } else {
        const Bf16x2Split e01 = split_bf16x2(x[j].x, x[j].y), e23 = split_bf16x2(x[j].z, x[j].w);
        *reinterpret_cast<uint2*>(&xs.x[buffer][0][m][k]) = make_uint2(e01.hi, e23.hi);
        if constexpr (kSplit) *reinterpret_cast<uint2*>(&xs.x[buffer][1][m][k]) = make_uint2(e01.lo, e23.lo);
      }
    }
  };

  float acc[kTiles][kNTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int all_passes = (args.k + kPassK - 1) / kPassK;
  const int pass_begin = partial != nullptr ? split * passes_per_split : 0;
  const int pass_end = partial != nullptr ? min(all_passes, pass_begin + passes_per_split) : all_passes;
  WeightFrags<kTiles, kFormat> w_now, w_next;
  // FP8: one n-tile's products of a sub-chunk, before its K block's scale joins them to acc.
  float chunk_acc[kFp8 ? kTiles : 1][4];
  float4 x_next[kXLoads];
  load_weights(w_now, pass_begin * kPassK);
  load_x(x_next, pass_begin * kPassK);
  store_x(x_next, 0);
  __syncthreads();
  for (int c = pass_begin; c < pass_end; ++c) {
    const bool more = c + 1 < pass_end;
    if (more) {
      load_weights(w_next, (c + 1) * kPassK);
      load_x(x_next, (c + 1) * kPassK);
    }
    const int buffer = (c - pass_begin) & 1;
    if constexpr (kA8) {
      // Each n-tile: the pass's 128 K (one scale block of both operands) as 2 sub-chunks × 2
      // MMAs of 32 K, then its sums times the rows' weight scales and the columns' activation scales.
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        if (j >= active_ntiles) break;  // uniform: columns past the group's rows
        float pass_acc[kTiles][4];
#pragma unroll
        for (int i = 0; i < kTiles; ++i) pass_acc[i][0] = pass_acc[i][1] = pass_acc[i][2] = pass_acc[i][3] = 0.0f;
#pragma unroll
        for (int q = 0; q < kSubs; ++q) {
          const uint4 b = *reinterpret_cast<const uint4*>(&xs.codes[buffer][j * 8 + g][q * kChunk + 16 * t]);
#pragma unroll
          for (int i = 0; i < kTiles; ++i) {
            const uint4 lo = w_now.codes[i][0][q], hi = w_now.codes[i][1][q];  // rows g, g + 8
            mma_e4m3(pass_acc[i], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
            mma_e4m3(pass_acc[i], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
          }
        }
        const float x_scale[2] = {xs.scale[buffer][j * 8 + 2 * t], xs.scale[buffer][j * 8 + 2 * t + 1]};
#pragma unroll
        for (int i = 0; i < kTiles; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][j][e] += pass_acc[i][e] * (w_now.scale[i][e >> 1][0] * x_scale[e & 1]);
      }
    } else {
#pragma unroll
      for (int q = 0; q < kSubs; ++q) {
        const WeightFrags<kTiles> a_frags = [&] {
          if constexpr (kMx) {
            WeightFrags<kTiles> decoded;
#pragma unroll
            for (int i = 0; i < kTiles; ++i)
#pragma unroll
              for (int r = 0; r < 2; ++r) mxfp4_to_bf16x16(w_now.codes[i][r], w_now.e8m0[i][r], decoded.row[i][r]);
            return decoded;
          } else if constexpr (kFp8) {
            WeightFrags<kTiles> decoded;
#pragma unroll
            for (int i = 0; i < kTiles; ++i)
#pragma unroll
              for (int r = 0; r < 2; ++r) fp8_e4m3_to_bf16x16(w_now.codes[i][r][q], decoded.row[i][r]);
            return decoded;
          } else {
            return w_now;
          }
        }();
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
          if (j >= active_ntiles) break;  // uniform: columns past the group's rows
          uint4 b[kHalves][2];
#pragma unroll
          for (int half = 0; half < kHalves; ++half)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              b[half][h] = *reinterpret_cast<const uint4*>(&xs.x[buffer][half][j * 8 + g][q * kChunk + 16 * t + 8 * h]);
#pragma unroll
          for (int s = 0; s < 4; ++s) {
#pragma unroll
            for (int i = 0; i < kTiles; ++i) {
              const uint32_t a0 = word_of(a_frags.row[i][0], 2 * s), a1 = word_of(a_frags.row[i][1], 2 * s);
              const uint32_t a2 = word_of(a_frags.row[i][0], 2 * s + 1), a3 = word_of(a_frags.row[i][1], 2 * s + 1);
#pragma unroll
              for (int half = 0; half < kHalves; ++half) {
                if constexpr (kFp8) {
                  if (s == 0 && half == 0) chunk_acc[i][0] = chunk_acc[i][1] = chunk_acc[i][2] = chunk_acc[i][3] = 0.0f;
                  mma_bf16(chunk_acc[i], a0, a1, a2, a3, word_of(b[half], 2 * s), word_of(b[half], 2 * s + 1));
                } else {
                  mma_bf16(acc[i][j], a0, a1, a2, a3, word_of(b[half], 2 * s), word_of(b[half], 2 * s + 1));
                }
              }
            }
          }
          if constexpr (kFp8) {
#pragma unroll
            for (int i = 0; i < kTiles; ++i)
#pragma unroll
              for (int e = 0; e < 4; ++e) acc[i][j][e] += chunk_acc[i][e] * w_now.scale[i][e >> 1][q];
          }
        }
      }
    }
    if (more) store_x(x_next, buffer ^ 1);
    __syncthreads();
    if (more) w_now = w_next;
  }

  // acc[i][j][e]: (feature_of(i, e / 2), row j·8 + 2t + e % 2); SwiGLU pairs tile 0 with tile 1.
  constexpr int kOutTiles = kSwiglu ? 1 : kTiles;
#pragma unroll
  for (int i = 0; i < kOutTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
      if (j >= active_ntiles) break;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int m = j * 8 + 2 * t + (e & 1);
        const int r = e >> 1;
        if (m >= rows_here || !row_ok[i][r]) continue;
        const int feature = feature_of(i, r);
        float value = acc[i][j][e];
        if (partial != nullptr) {  // the bias joins split 0's sums
          if (split == 0) value += gemm_bias(args, group, feature);
          partial[(int64_t(split) * partial_rows + tile_begin + m) * args.n + feature] = value;
          continue;
        }
        if constexpr (kSwiglu) {
          value = glu(value + gemm_bias(args, group, feature), acc[1][j][e] + gemm_bias(args, group, args.n + feature),
                      args.glu);
        } else {
          value += gemm_bias(args, group, feature);
        }
        args.out[int64_t(tile_begin + m) * args.n + feature] = value;
      }
    }
}

// K per pass of the kernel (kPassK).
int pass_k(const GemmArgs& args) { return args.weight_fp8 != nullptr ? kFp8Subchunks * kChunk : kChunk; }

// Activation rows per block (8 · kNTiles): dispatch_rows and k_splits both follow it.
int row_tile(int rows) { return rows <= 8 ? 8 : 16; }
constexpr int kGroupedTiles = 2;  // m-tiles per warp of grouped GEMMs (see dispatch_rows)
// Whether a GEMM takes kGroupedTiles m-tiles per warp: grouped ones, SwiGLU's gate/up pairs, and
// MXFP4 weights (GPT-OSS's experts); dispatch_rows and k_splits both follow it.
bool grouped_tiles(const GemmArgs& args) {
  return args.offsets != nullptr || args.swiglu || args.weight_mxfp4 != nullptr;
}

// Grouped GEMMs whose groups average 16 rows or more take 32-row tiles: a group of 17-32 rows
// then streams its weights once instead of twice (the second 16-row tile from L2, which bounds
// these steps). Measured on an H200 (Mixtral shape, 8 layers, split activations, same-run A/B,
// two reps): batch 64 (16 rows an expert on average) 7,531-7,554 → 7,894-7,899 tok/s, batch
// 128 10,225-10,249 → 11,209-11,215; at batch 32 (8 on average) they lost 4% (4,343-4,378 →
// 4,174-4,186: 163 registers a thread, 3 blocks an SM instead of 4), as 24-row tiles did.
// FP8 weights take them too, at 246 registers (H100, Mixtral 8 layers, batch 64: 7,087 tok/s with
// them, 5,946 without; capping FP8's 16-row tiles at 168 registers to fit 3 blocks an SM spilled
// and lost at every batch).
bool long_grouped_tile(const GemmArgs& args) { return args.offsets != nullptr && args.total_rows >= 16 * args.groups; }

// K splits (split_k.cuh) counting one row tile per touched group of a grouped GEMM (most
// tiles of a group past its rows exit at once).
int k_splits(const GemmArgs& args) {
  if (args.swiglu || partial_rows(args) <= 0) return 1;
  const bool grouped = args.offsets != nullptr;
  const int64_t feature_blocks = ceil_div(args.n, kWarps * 16 * (grouped_tiles(args) ? kGroupedTiles : 1));
  const int64_t blocks =
      feature_blocks * (grouped ? std::min(args.groups, args.total_rows) : ceil_div(args.rows, row_tile(args.rows)));
  return k_split_count(blocks, ceil_div(args.k, pass_k(args)));
}

template <int kNTiles, int kTiles, bool kSwiglu, bool kSplit, Format kFormat>
void launch(const GpuExec& exec, const GemmArgs& args, float* workspace) {
  const int splits = workspace != nullptr ? k_splits(args) : 1;
  const int passes = ceil_div(args.k, pass_k(args));
  // Row tiles vary fastest, so the tiles sharing a block of weight rows run together and all
  // but the first read those weights from L2.
  const int warp_features = kSwiglu ? 16 : 16 * kTiles;
  const dim3 grid(ceil_div(args.rows, 8 * kNTiles), ceil_div(args.n, kWarps * warp_features),
                  (args.offsets != nullptr ? args.groups : 1) * splits);
  float* partial = splits > 1 ? workspace : nullptr;
  launch_dependent("mma_gemm", mma_gemm_kernel<kNTiles, kTiles, kSwiglu, kSplit, kFormat>, grid, kWarps * 32, 0, exec,
                   args, partial, splits, ceil_div(passes, splits), partial_rows(args));
  if (partial != nullptr) {
    sum_partials(exec, partial, splits, int64_t(partial_rows(args)) * args.n, args.out);
  }
}

template <bool kSwiglu, bool kSplit, Format kFormat>
void dispatch_rows(const GpuExec& exec, const GemmArgs& args, float* workspace) {
  // Row tiles of 8 or 16 rows (32 for grouped GEMMs of long groups, long_grouped_tile): larger
  // tiles need more registers, fewer blocks fit an SM and fewer weight bytes are in flight
  // (measured: 64-row tiles streamed at 1.6 TB/s, 8-row tiles at 3.9 TB/s on an H200). A group
  // with more rows takes several tiles (grid x).
  // m-tiles: SwiGLU pairs gate and up; grouped experts take two tiles per warp (the down
  // projection then keeps as many weight bytes in flight as gate/up); ungrouped GEMMs one.
  // Either splits K when that leaves SMs idle (a workspace given, no SwiGLU). MXFP4 weights
  // (GPT-OSS's experts, always grouped) take the grouped tiles.
  const bool short_tile = row_tile(args.rows) == 8;
  if (grouped_tiles(args)) {
    if (short_tile) return launch<1, kGroupedTiles, kSwiglu, kSplit, kFormat>(exec, args, workspace);
    if (long_grouped_tile(args)) return launch<4, kGroupedTiles, kSwiglu, kSplit, kFormat>(exec, args, workspace);
    return launch<2, kGroupedTiles, kSwiglu, kSplit, kFormat>(exec, args, workspace);
  }
  if constexpr (!kSwiglu && kFormat != Format::kMxfp4) {
    if (short_tile) return launch<1, 1, false, kSplit, kFormat>(exec, args, workspace);
    return launch<2, 1, false, kSplit, kFormat>(exec, args, workspace);
  }
}

template <bool kSwiglu, bool kSplit>
void dispatch_weights(const GpuExec& exec, const GemmArgs& args, float* workspace) {
  if (args.weight_mxfp4 != nullptr) return dispatch_rows<kSwiglu, kSplit, Format::kMxfp4>(exec, args, workspace);
  if (args.weight_fp8 != nullptr && args.fp8.quantize_activations) {
    return dispatch_rows<kSwiglu, false, Format::kFp8A8>(exec, args, workspace);
  }
  if (args.weight_fp8 != nullptr) return dispatch_rows<kSwiglu, kSplit, Format::kFp8>(exec, args, workspace);
  dispatch_rows<kSwiglu, kSplit, Format::kBf16>(exec, args, workspace);
}

}  // namespace

bool mma_gemm_supported(int k) { return k % 8 == 0; }

bool mma_gemm_supports_fp8(int k, const ops::Fp8Scales& fp8) {
  if (fp8.quantize_activations) {  // a pass is one 128-K block of both operands
    return k % kFp8Group == 0 && fp8.block == kFp8Group && fp8.offset == 0;
  }
  return k % 16 == 0 && fp8.block > 0 && fp8.block % kChunk == 0 && fp8.offset % kChunk == 0;
}

size_t mma_gemm_workspace_floats(const GemmArgs& args) {
  const int splits = k_splits(args);
  return splits > 1 ? size_t(splits) * partial_rows(args) * args.n : 0;
}

void mma_gemm(const GpuExec& exec, const GemmArgs& args, bool split, float* workspace) {
  if (args.rows == 0 || args.n == 0) return;
  if (args.x_rows != nullptr) {
    std::fprintf(stderr, "moeserve: mma_gemm reads x densely (x_rows is small_gemm's)\n");
    std::abort();
  }
  if (!mma_gemm_supported(args.k)) {
    std::fprintf(stderr, "moeserve: mma_gemm needs K %% 8 == 0, got %d\n", args.k);
    std::abort();
  }
  if (args.weight_fp8 != nullptr && (args.fp8.scale == nullptr || !mma_gemm_supports_fp8(args.k, args.fp8))) {
    std::fprintf(stderr,
                 "moeserve: mma_gemm on FP8 weights needs K %% 16 == 0 and scale blocks and offset multiples of %d; "
                 "with activation quantization K %% %d == 0, blocks of %d at offset 0 (K %d, block %d, offset %d)\n",
                 kChunk, kFp8Group, kFp8Group, args.k, args.fp8.block, args.fp8.offset);
    std::abort();
  }
  if (args.weight_fp8 != nullptr && args.fp8.quantize_activations && split) {
    std::fprintf(stderr, "moeserve: mma_gemm quantizes FP8 activations in the bf16 mode only (not split)\n");
    std::abort();
  }
  if (args.weight_mxfp4 != nullptr && args.k % 32 != 0) {
    std::fprintf(stderr, "moeserve: mma_gemm on MXFP4 weights needs K %% 32 == 0, got %d\n", args.k);
    std::abort();
  }
  if (args.swiglu) {  // never splits K (k_splits), so no workspace
    split ? dispatch_weights<true, true>(exec, args, nullptr) : dispatch_weights<true, false>(exec, args, nullptr);
  } else {
    split ? dispatch_weights<false, true>(exec, args, workspace)
          : dispatch_weights<false, false>(exec, args, workspace);
  }
}

}  // namespace moeserve::cuda
