// CUDA op: decode-sized GEMM, float32 activations × bf16 (or MXFP4, or FP8) weights with float32
// accumulation (ops::linear for few rows, and the grouped expert GEMMs of the MoE block with
// SwiGLU fused). It is memory-bound by design: each warp streams 4 weight rows with 16-byte loads
// while a tile of up to kSmallTile activation rows waits in shared memory, so every weight byte
// is read once per tile. Grouped mode reads the group's row range from device offsets (no host round trip)
// and skips groups with no rows.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/mxfp4.cuh"
#include "kernels/cuda/split_k.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 4;  // weight rows per warp
constexpr int kChunk = 512;      // K elements staged per pass (32 lanes × 8 × 2)

// The weights: bf16, or decoded in registers from MXFP4 (GPT-OSS's experts) or from block-scaled
// FP8 e4m3 (DeepSeek-V3's, Qwen3-FP8's; not yet held on CUDA, see ops::GemmArgs::weight_fp8).
enum class Weights { kBf16, kMxfp4, kFp8 };
Weights weights_of(const GemmArgs& args) {
  return args.weight_mxfp4 != nullptr ? Weights::kMxfp4 : args.weight_fp8 != nullptr ? Weights::kFp8 : Weights::kBf16;
}

// MXFP4 weights take 4 bytes per 8 K and FP8 8 where bf16 takes 16, so a pass stages up to 4
// (2) times the K (as many weight bytes in flight a lane as bf16's) within the same shared
// memory, 36 KB: MXFP4 2048 K at tiles of up to 4 rows, 1024 at 8, 512 at 16; FP8 1024 K up to 4
// rows, 512 beyond. Lane l takes the 16-K spans l, l + 32, … of a pass (coalesced 8- or 16-byte
// loads), and the staged activations skip 4 floats after every 32, so the lanes' float4 reads of
// their spans hit distinct banks.
__host__ __device__ constexpr int chunk_of(int tile, Weights weights) {
  return weights == Weights::kMxfp4 ? (tile <= 4   ? 2048
                                       : tile <= 8 ? 1024
                                                   : 512)
         : weights == Weights::kFp8 ? (tile <= 4 ? 1024 : 512)
                                    : kChunk;
}
__device__ __forceinline__ int span_padded(int kk) { return kk + (kk >> 5) * 4; }
constexpr int kNarrowOutputs = 64;       // up to this many outputs: one warp per output,
constexpr int kNarrowRowOutputs = 4096;  // and up to kMaxExperts while rows × outputs stay this few

// 8 bf16 weights as raw bits (kept packed until used, so the loads stay in flight while the
// activations are staged); zero past the end of the row.
__device__ __forceinline__ uint4 load_weights(const uint16_t* row, int k, int k_total, bool vector_ok) {
  if (vector_ok && k + 8 <= k_total) return *reinterpret_cast<const uint4*>(row + k);
  uint32_t words[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = k + 2 * i < k_total ? row[k + 2 * i] : 0u;
    const uint32_t hi = k + 2 * i + 1 < k_total ? row[k + 2 * i + 1] : 0u;
    words[i] = lo | (hi << 16);
  }
  return make_uint4(words[0], words[1], words[2], words[3]);
}

struct Floats8 {
  float v[8];
};

__device__ __forceinline__ Floats8 unpack(uint4 raw) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  Floats8 out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out.v[2 * i] = __uint_as_float(words[i] << 16);
    out.v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
  return out;
}

// partial != null (no SwiGLU): blockIdx.z takes K chunks [z · chunks_per_split, + chunks_per_split)
// and writes its sums to partial[z][row][col] (partial_rows rows) for sum_partials.
// MXFP4 and FP8 weights: chunks of chunk_of(kTile, kFormat) K, lane l taking the 16-K spans
// l + 32 s (8 bytes and an e8m0 scale, or 16 bytes and a float32 block scale, of each of its rows
// per span) instead of two spans of 8 bf16.
template <int kTile, Weights kFormat>
__global__ void __launch_bounds__(kWarps * 32) small_gemm_kernel(GemmArgs args, float* partial, int chunks_per_split,
                                                                 int partial_rows) {
  start_after_prior_grids();
  constexpr bool kMx = kFormat == Weights::kMxfp4;
  constexpr bool kFp8 = kFormat == Weights::kFp8;
  constexpr bool kSpanned = kMx || kFp8;
  constexpr int kStage = chunk_of(kTile, kFormat);     // K per pass
  constexpr int kSpans = kSpanned ? kStage / 512 : 1;  // 16-K spans per lane per pass
  constexpr int kXStride = kSpanned ? kStage / 32 * 36 : kStage;
  __shared__ __align__(16) float xs[kTile][kXStride];  // read as float4
  __shared__ int nonempty_group;
  // Grouped: blockIdx.y picks the group (the y-th with rows when the grid has fewer rows than
  // groups), whose rows the block walks tile by tile. Ungrouped: blockIdx.y is the row tile, so
  // many rows (the router over a prefill) spread over blocks.
  const bool grouped = args.offsets != nullptr;
  int group = grouped ? blockIdx.y : 0;
  if (grouped && gridDim.y < args.groups) {
    group = nth_nonempty_group(args.offsets, args.groups, blockIdx.y, &nonempty_group);
    if (group < 0) return;  // uniform over the block: fewer groups have rows than the grid has
  }
  const int row_begin = grouped ? args.offsets[group] : blockIdx.y * kTile;
  const int row_end = grouped ? args.offsets[group + 1] : min(args.rows, row_begin + kTile);
  if (row_begin >= row_end) return;  // uniform over the block: an expert no token chose
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const uint16_t* weight = kSpanned ? nullptr : args.weight + group * args.group_stride;
  const uint8_t* weight_mx = kMx ? args.weight_mxfp4 + group * args.group_stride / 2 : nullptr;  // [N_w, K / 2]
  const uint8_t* scale_mx = kMx ? args.mx_scale + group * args.group_stride / 32 : nullptr;      // [N_w, K / 32]
  const uint8_t* weight_f8 = kFp8 ? args.weight_fp8 + group * args.group_stride : nullptr;       // [N_w, K] e4m3
  // [N_w, scale_cols]: row n's scale of K block (fp8.offset + k) / fp8.block
  const float* scale_f8 = kFp8 ? args.fp8.scale + group * args.scale_group_stride : nullptr;
  const int scale_cols = kFp8 ? (args.fp8.offset + args.k + args.fp8.block - 1) / args.fp8.block : 0;
  const int cols_per_warp = args.swiglu ? kRowsPerWarp / 2 : kRowsPerWarp;
  const int col0 = (blockIdx.x * kWarps + warp) * cols_per_warp;
  const bool vector_ok = (args.k % 8) == 0;
  int weight_rows[kRowsPerWarp];
  bool row_valid[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int col = col0 + (args.swiglu ? j / 2 : j);
    row_valid[j] = col < args.n;
    weight_rows[j] = args.swiglu ? col + (j % 2) * args.n : col;
  }
  for (int tile = row_begin; tile < row_end; tile += kTile) {
    const int rows_here = min(kTile, row_end - tile);
    float acc[kRowsPerWarp][kTile];
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
      for (int m = 0; m < kTile; ++m) acc[j][m] = 0.0f;
    const int k_begin = partial != nullptr ? blockIdx.z * chunks_per_split * kStage : 0;
    const int k_end = partial != nullptr ? min(args.k, k_begin + chunks_per_split * kStage) : args.k;
    for (int k0 = k_begin; k0 < k_end; k0 += kStage) {
      uint4 w[kRowsPerWarp][2];
      uint2 w_mx[kRowsPerWarp][kSpans];
      uint8_t e8m0[kRowsPerWarp][kSpans];
      uint4 w_f8[kRowsPerWarp][kSpans];
      float f8_scale[kRowsPerWarp][kSpans];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        if constexpr (kSpanned) {
          const int64_t row = static_cast<int64_t>(weight_rows[j]);
#pragma unroll
          for (int sp = 0; sp < kSpans; ++sp) {
            const int k = k0 + (sp * 32 + lane) * 16;  // K % 32 (MXFP4) or % 16 (FP8) == 0: whole spans
            const bool live = row_valid[j] && k < args.k;
            if constexpr (kMx) {
              w_mx[j][sp] = live ? *reinterpret_cast<const uint2*>(weight_mx + row * (args.k / 2) + k / 2)
                                 : make_uint2(0u, 0u);
              e8m0[j][sp] = live ? scale_mx[row * (args.k / 32) + k / 32] : uint8_t{127};
            } else {
              w_f8[j][sp] = live ? *reinterpret_cast<const uint4*>(weight_f8 + row * args.k + k)
                                 : make_uint4(0, 0, 0, 0);
              f8_scale[j][sp] = live ? scale_f8[row * scale_cols + (args.fp8.offset + k) / args.fp8.block] : 0.0f;
            }
          }
        } else {
          const uint16_t* row = weight + static_cast<int64_t>(weight_rows[j]) * args.k;
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            const int k = k0 + s * 256 + lane * 8;
            if (row_valid[j] && k < args.k) {
              w[j][s] = load_weights(row, k, args.k, vector_ok);
            } else {
              w[j][s] = make_uint4(0u, 0u, 0u, 0u);
            }
          }
        }
      }
      // The activations are staged after the weight loads are issued, so the two latencies overlap.
      if constexpr (kSpanned) {
        // float4s, every load of the pass in flight before the first store (K % 16 == 0)
        constexpr int kVecs = (kTile * kStage / 4 + kWarps * 32 - 1) / (kWarps * 32);
        float4 staged[kVecs];
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          const int i = threadIdx.x + u * kWarps * 32;
          const int m = i / (kStage / 4), kk = 4 * (i % (kStage / 4));
          staged[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          if (m < rows_here && k0 + kk < args.k) {
            const int64_t x_row = args.x_rows != nullptr ? args.x_rows[tile + m] : tile + m;
            staged[u] = *reinterpret_cast<const float4*>(args.x + x_row * args.k + k0 + kk);
          }
        }
        __syncthreads();
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          const int i = threadIdx.x + u * kWarps * 32;
          const int m = i / (kStage / 4), kk = 4 * (i % (kStage / 4));
          if (m < rows_here) *reinterpret_cast<float4*>(&xs[m][span_padded(kk)]) = staged[u];
        }
      } else {
        __syncthreads();
        for (int i = threadIdx.x; i < rows_here * kStage; i += blockDim.x) {
          const int m = i / kStage;
          const int kk = i % kStage;
          const int64_t x_row = args.x_rows != nullptr ? args.x_rows[tile + m] : tile + m;
          xs[m][kk] = (k0 + kk < args.k) ? args.x[x_row * args.k + k0 + kk] : 0.0f;
        }
      }
      __syncthreads();
      if constexpr (kSpanned) {
#pragma unroll
        for (int sp = 0; sp < kSpans; ++sp)
#pragma unroll
          for (int j = 0; j < kRowsPerWarp; ++j) {
            float wf[16];  // the span's weights, unscaled
            float scale;
            if constexpr (kMx) {
              uint32_t pairs[8];  // bf16 pairs: a float is a pair's half in the high 16 bits
              mxfp4_bf16_pairs(w_mx[j][sp], pairs);
#pragma unroll
              for (int i = 0; i < 8; ++i) {
                wf[2 * i] = __uint_as_float(pairs[i] << 16);
                wf[2 * i + 1] = __uint_as_float(pairs[i] & 0xffff0000u);
              }
              scale = mxfp4_scale(e8m0[j][sp]);
            } else {
              fp8_e4m3_to_float16(w_f8[j][sp], wf);
              scale = f8_scale[j][sp];
            }
#pragma unroll
            for (int m = 0; m < kTile; ++m) {
              if (m >= rows_here) break;  // uniform over the block
              const float4* xv = reinterpret_cast<const float4*>(&xs[m][span_padded((sp * 32 + lane) * 16)]);
              float sum = 0.0f;
#pragma unroll
              for (int q = 0; q < 4; ++q) {
                const float4 xq = xv[q];
                sum += wf[4 * q] * xq.x + wf[4 * q + 1] * xq.y + wf[4 * q + 2] * xq.z + wf[4 * q + 3] * xq.w;
              }
              acc[j][m] += sum * scale;
            }
          }
        continue;
      }
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int kk = s * 256 + lane * 8;
        Floats8 wf[kRowsPerWarp];
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) wf[j] = unpack(w[j][s]);
#pragma unroll
        for (int m = 0; m < kTile; ++m) {
          if (m >= rows_here) break;  // uniform over the block: a group with fewer rows than the tile
          const float4 xa = *reinterpret_cast<const float4*>(&xs[m][kk]);
          const float4 xb = *reinterpret_cast<const float4*>(&xs[m][kk + 4]);
#pragma unroll
          for (int j = 0; j < kRowsPerWarp; ++j) {
            const float* wv = wf[j].v;
            acc[j][m] += wv[0] * xa.x + wv[1] * xa.y + wv[2] * xa.z + wv[3] * xa.w + wv[4] * xb.x + wv[5] * xb.y +
                         wv[6] * xb.z + wv[7] * xb.w;
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
      for (int m = 0; m < kTile; ++m) {
        if (m >= rows_here) break;
        acc[j][m] = warp_sum(acc[j][m]);
      }
#pragma unroll
    for (int m = 0; m < kTile; ++m) {
      if (lane != m || m >= rows_here) continue;
      float* out_row = args.out + static_cast<int64_t>(tile + m) * args.n;
      if (args.swiglu) {
#pragma unroll
        for (int jj = 0; jj < kRowsPerWarp / 2; ++jj) {
          if (!row_valid[2 * jj]) continue;
          const float g = acc[2 * jj][m] + gemm_bias(args, group, col0 + jj);
          const float u = acc[2 * jj + 1][m] + gemm_bias(args, group, args.n + col0 + jj);
          out_row[col0 + jj] = glu(g, u, args.glu);
        }
      } else if (partial != nullptr) {
        float* partial_row = partial + (static_cast<int64_t>(blockIdx.z) * partial_rows + tile + m) * args.n;
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) {  // the bias joins split 0's sums
          if (!row_valid[j]) continue;
          partial_row[col0 + j] = acc[j][m] + (blockIdx.z == 0 ? gemm_bias(args, group, col0 + j) : 0.0f);
        }
      } else {
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) {
          if (row_valid[j]) out_row[col0 + j] = acc[j][m] + gemm_bias(args, group, col0 + j);
        }
      }
    }
  }
}

// Few outputs (the MoE router: N = E), ungrouped: `split` warps per (row, output), interleaved
// over K with 8 weights and 8 activations per lane per step, their sums added in shared memory.
// The tiled kernel would run a single block per 16 rows here (measured: 0.84 ms of router per
// 64-token step over 8 layers); one warp per output leaves a 1-token step's router to 8 warps,
// each walking 4096 weights alone (measured: 11 -> 5 µs per layer at one token on an H200).
__global__ void __launch_bounds__(kWarps * 32) narrow_gemm_kernel(GemmArgs args, int split) {
  const int warp_in_block = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int output = blockIdx.x * (kWarps / split) + warp_in_block / split;
  const int part = warp_in_block % split;
  const bool live = output < args.rows * args.n;
  const int row = live ? output / args.n : 0;
  const int col = live ? output % args.n : 0;
  const uint16_t* w = args.weight + static_cast<int64_t>(col) * args.k;
  const bool vector_ok = (args.k % 8) == 0;
  start_after_prior_grids();
  __shared__ float sums[kWarps];
  float sum = 0.0f;
  if (live) {
    const float* x = args.x + static_cast<int64_t>(args.x_rows != nullptr ? args.x_rows[row] : row) * args.k;
    for (int k = (part * 32 + lane) * 8; k < args.k; k += split * 32 * 8) {
      const Floats8 wf = unpack(load_weights(w, k, args.k, vector_ok));
      if (vector_ok) {
        const float4 a = *reinterpret_cast<const float4*>(x + k);
        const float4 b = *reinterpret_cast<const float4*>(x + k + 4);
        sum += wf.v[0] * a.x + wf.v[1] * a.y + wf.v[2] * a.z + wf.v[3] * a.w + wf.v[4] * b.x + wf.v[5] * b.y +
               wf.v[6] * b.z + wf.v[7] * b.w;
      } else {
        for (int i = 0; i < 8 && k + i < args.k; ++i) sum += wf.v[i] * x[k + i];
      }
    }
  }
  sum = warp_sum(sum);
  if (split > 1) {
    if (lane == 0) sums[warp_in_block] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int p = 0; p < split; ++p) sum += sums[warp_in_block - part + p];  // fixed order: deterministic
  }
  if (live && part == 0 && lane == 0) {
    args.out[static_cast<int64_t>(row) * args.n + col] = sum + gemm_bias(args, 0, col);
  }
}

// Warps per narrow output: enough for ~1,024 warps in all (8 per output at one 8-expert token).
int narrow_split(const GemmArgs& args) {
  const int64_t outputs = int64_t(args.rows) * args.n;
  int split = 1;
  while (split < kWarps && outputs * split < 1024) split *= 2;
  return split;
}

// The grid: (column blocks, groups that can have rows or row tiles).
dim3 grid_of(const GemmArgs& args, int tile) {
  const int cols_per_block = kWarps * (args.swiglu ? kRowsPerWarp / 2 : kRowsPerWarp);
  // Grouped: one grid row per group that can have rows (each has at least one of total_rows).
  const int group_rows = args.total_rows > 0 ? std::min(args.groups, args.total_rows) : args.groups;
  return dim3(ceil_div(args.n, cols_per_block), args.offsets != nullptr ? group_rows : ceil_div(args.rows, tile));
}

int tile_of(int rows) { return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : rows <= 8 ? 8 : 16; }

// The routers of many experts at decode sizes too (Qwen3's 128 at one token: the tiled kernel
// gave the 128 × 2048 router 4 blocks, 9 µs a layer).
bool narrow(const GemmArgs& args) {
  return args.offsets == nullptr && !args.swiglu && weights_of(args) == Weights::kBf16 &&
         (args.n <= kNarrowOutputs || (args.n <= kMaxExperts && int64_t(args.rows) * args.n <= kNarrowRowOutputs));
}

int k_splits(const GemmArgs& args) {
  if (args.swiglu || narrow(args) || partial_rows(args) <= 0) return 1;
  const dim3 grid = grid_of(args, tile_of(args.rows));
  return k_split_count(int64_t(grid.x) * grid.y, ceil_div(args.k, chunk_of(tile_of(args.rows), weights_of(args))));
}

// Returns the splits; sum: add them up into args.out (else the caller's consumer does, up to
// kMaxFusedSplits of them).
template <int kTile>
int launch(const GpuExec& exec, const GemmArgs& args, float* workspace, bool sum) {
  const int splits = workspace != nullptr ? k_splits(args) : 1;
  sum = sum || splits > kMaxFusedSplits;
  dim3 grid = grid_of(args, kTile);
  grid.z = splits;
  float* partial = splits > 1 ? workspace : nullptr;
  const Weights weights = weights_of(args);
  const int chunks = ceil_div(args.k, chunk_of(kTile, weights));
  const auto kernel = weights == Weights::kMxfp4 ? small_gemm_kernel<kTile, Weights::kMxfp4>
                      : weights == Weights::kFp8 ? small_gemm_kernel<kTile, Weights::kFp8>
                                                 : small_gemm_kernel<kTile, Weights::kBf16>;
  launch_dependent("small_gemm", kernel, grid, kWarps * 32, 0, exec, args, partial, ceil_div(chunks, splits),
                   partial_rows(args));
  if (partial != nullptr && sum) {
    sum_partials(exec, partial, splits, int64_t(partial_rows(args)) * args.n, args.out);
    return 1;
  }
  return splits;
}

// The decoded formats' layout needs (a 16-K span never straddles a scale block).
void check_weights(const GemmArgs& args) {
  const char* problem = nullptr;
  if (args.weight_mxfp4 != nullptr && args.k % 32 != 0) problem = "MXFP4 weights need K % 32 == 0";
  if (args.weight_fp8 != nullptr &&
      (args.k % 16 != 0 || args.fp8.scale == nullptr || args.fp8.block <= 0 || args.fp8.block % 16 != 0 ||
       args.fp8.offset % 16 != 0 || args.fp8.quantize_activations)) {
    problem = "FP8 weights need K, the scale block and its offset multiples of 16 (and no activation quantization)";
  }
  if (problem == nullptr) return;
  std::fprintf(stderr, "moeserve: small_gemm: %s (K %d)\n", problem, args.k);
  std::abort();
}

int dispatch(const GpuExec& exec, const GemmArgs& args, float* workspace, bool sum) {
  check_weights(args);
  if (narrow(args)) {
    const int split = narrow_split(args);
    launch_dependent("small_gemm (narrow)", narrow_gemm_kernel, ceil_div(int64_t(args.rows) * args.n * split, kWarps),
                     kWarps * 32, 0, exec, args, split);
    return 1;
  }
  // The tile only needs to cover the largest group, which has at most `rows` rows.
  switch (tile_of(args.rows)) {
    case 1:
      return launch<1>(exec, args, workspace, sum);
    case 2:
      return launch<2>(exec, args, workspace, sum);
    case 4:
      return launch<4>(exec, args, workspace, sum);
    case 8:
      return launch<8>(exec, args, workspace, sum);
    default:
      return launch<16>(exec, args, workspace, sum);
  }
}

}  // namespace

size_t small_gemm_workspace_floats(const GemmArgs& args) {
  const int splits = k_splits(args);
  return splits > 1 ? size_t(splits) * partial_rows(args) * args.n : 0;
}

void small_gemm(const GpuExec& exec, const GemmArgs& args, float* workspace) {
  if (args.rows == 0 || args.n == 0) return;
  dispatch(exec, args, workspace, /*sum=*/true);
}

SplitSums small_gemm_unsummed(const GpuExec& exec, const GemmArgs& args, float* workspace) {
  if (args.rows == 0 || args.n == 0) return SplitSums{args.out, 1, 0};
  const int splits = dispatch(exec, args, workspace, /*sum=*/false);
  if (splits == 1) return SplitSums{args.out, 1, 0};
  return SplitSums{workspace, splits, int64_t(partial_rows(args)) * args.n};
}

}  // namespace moeserve::cuda
