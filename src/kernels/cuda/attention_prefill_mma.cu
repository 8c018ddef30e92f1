// CUDA op: causal paged attention for prefill-sized batches on tensor cores (flash-attention
// style, mma.sync m16n8k16 bf16). Same contract and query tiles as paged_attention_prefill; one
// block takes a query tile × one kv head: its tile_rows × group query vectors, 16 per warp.
// Per tile of kKeys keys the block copies K and V from the paged float32 cache into a shared
// stage (cp.async, issued one tile ahead so the copy overlaps the tile before it), converts them
// to bf16 tiles (hi + lo halves in the split mode), then each warp computes
//   S [16 queries, kKeys] = Q · Kᵀ            (A = Q from registers, B = K rows)
//   online softmax per query row over S       (registers; a row lives in one quad of lanes)
//   O [16, dim] = O · correction + P · V      (A = P straight from S's accumulators, B = V via
//                                              ldmatrix.trans)
// Split mode: x ≈ hi + lo for Q, K, P and V, and each product takes the three MMAs hi·hi,
// hi·lo, lo·hi (the lo·lo term is ~2⁻¹⁶ of the result), so results stay float32-like (mma_gemm's
// precise mode); plain mode multiplies the bf16 roundings alone.
#include <algorithm>
#include <climits>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/paged_cache.cuh"
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kKeys = 64;            // keys per staged tile: 8 MMA n-tiles of S
constexpr int kMaxDim = 128;         // head_dim: up to 8 k-steps of Q·Kᵀ, 16 n-tiles of O
constexpr int kMaxWarps = kPrefillMmaQueries / 16;  // 16 queries each
constexpr int kSkew = 8;             // bf16 per staged row beyond dim: conflict-free fragment reads

// 2^x by one MUFU op (results below 2^-126 flush to 0, as exp2f's would lose them in the sums).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// kDim: the head dim as a constant (64, 128: every stride and loop bound folds into immediate
// offsets, which is most of the kernel's integer work), or 0 for args.key_dim.
template <bool kSplit, int kDim, typename Kv>
__global__ void __launch_bounds__(kMaxWarps * 32) prefill_attention_mma_kernel(AttentionArgs args,
                                                                               const int32_t* tiles) {
  constexpr int kHalves = kSplit ? 2 : 1;
  // bf16 k [halves][kKeys][stride], v alike, then the stage of cache elements: k [kKeys][dim], v alike.
  extern __shared__ __align__(16) uint16_t staged[];
  const int dim = kDim > 0 ? kDim : args.key_dim;
  const int stride = dim + kSkew;
  uint16_t* k_tile = staged;
  uint16_t* v_tile = staged + kHalves * kKeys * stride;
  Kv* k_stage = reinterpret_cast<Kv*>(v_tile + kHalves * kKeys * stride);
  Kv* v_stage = k_stage + kKeys * dim;
  const int group = args.group;
  const int first_row = tiles[2 * blockIdx.x];
  const int tile_rows = tiles[2 * blockIdx.x + 1];
  const int queries = tile_rows * group;
  const int kv_head = blockIdx.y;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int k_steps = dim / 16;
  const int d_tiles = dim / 8;
  const bool warp_live = warp * 16 < queries;  // uniform over the warp

  // The thread's two query rows of the warp's 16: r = 0 → query warp·16 + g, r = 1 → + 8.
  // Query q is head kv_head · group + q % group of row first_row + q / group.
  int pos[2], lowest[2];
  float scale_log2[2], sink_log2[2];
  int64_t q_at[2], out_at[2];
  bool live[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int query = warp * 16 + g + 8 * r;
    live[r] = query < queries;
    const int row = first_row + (live[r] ? query / group : 0);
    const int head = kv_head * group + query % group;
    pos[r] = live[r] ? args.positions[row] : -1;  // -1: sees no key
    lowest[r] = live[r] ? lowest_key(args, pos[r]) : 0;
    scale_log2[r] = row_scale(args, max(pos[r], 0)) * 1.4426950408889634f;
    sink_log2[r] = sink_logit(args, head) * 1.4426950408889634f;
    q_at[r] = int64_t(row) * args.q_stride + int64_t(head) * dim;
    out_at[r] = (int64_t(row) * args.num_heads + head) * dim;
  }
  // Q fragments scaled by the row's scale · log2(e), so scores are base-2 exponents (one MUFU op
  // each); A layout: register i holds row r = i & 1, columns + 8 · (i >> 1).
  uint32_t q_hi[kMaxDim / 16][4], q_lo[kMaxDim / 16][4];
#pragma unroll
  for (int s = 0; s < kMaxDim / 16; ++s)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = i & 1;
      const int d = 16 * s + 2 * t + 8 * (i >> 1);
      float x0 = 0.0f, x1 = 0.0f;
      if (s < k_steps && live[r]) {
        const float2 pair = *reinterpret_cast<const float2*>(args.q + q_at[r] + d);
        x0 = pair.x * scale_log2[r];
        x1 = pair.y * scale_log2[r];
      }
      const Bf16x2Split pair = split_bf16x2(x0, x1);
      q_hi[s][i] = pair.hi;
      q_lo[s][i] = pair.lo;
    }

  float o[kMaxDim / 8][4];
#pragma unroll
  for (int j = 0; j < kMaxDim / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this thread's share; the quad's four are added at the end

  const KeyRange keys = key_range(args, first_row, tile_rows, kv_head);
  const int key_begin = keys.first, last_pos = keys.last, key_offset = keys.key_offset;
  const int value_offset = keys.value_offset;
  const int chunks = dim / 4;
  const int items = kKeys * chunks;
  // Staged item i (one float4 of a key and of its value) is key i / chunks of the tile, dims
  // 4 · (i % chunks): for a runtime dim, i / chunks as (i · magic) >> 20, exact for
  // i < 2²⁰ / chunks (> kKeys · 32).
  const uint32_t chunk_magic = ((1u << 20) + chunks - 1) / chunks;
  auto key_of_item = [&](int i) {
    return kDim > 0 ? i / chunks : static_cast<int>((static_cast<uint32_t>(i) * chunk_magic) >> 20);
  };
  // The cache entries of a tile's keys (floats from args.cache), looked up once per tile: the
  // block table walk costs two integer divisions, too many to repeat for every float4.
  __shared__ int64_t entry_at[kKeys];
  auto look_up_entries = [&](int tile) {
    for (int j = threadIdx.x; j < kKeys; j += blockDim.x)
      if (tile + j <= last_pos) entry_at[j] = cache_entry<Kv>(args, keys.table, tile + j) - kv_base<Kv>(args.cache);
  };
  // Copies the float32 K and V of a tile's keys into the stage, asynchronously (item i at 4 · i).
  auto stage_tile = [&](int tile) {
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int j = key_of_item(i);
      if (tile + j > last_pos) continue;
      const Kv* entry = kv_base<Kv>(args.cache) + entry_at[j] + 4 * (i - j * chunks);
      if constexpr (sizeof(Kv) == 4) {
        cp_async_16(k_stage + 4 * i, entry + key_offset);
        cp_async_16(v_stage + 4 * i, entry + value_offset);
      } else {
        cp_async_4(k_stage + 4 * i, entry + key_offset);
        cp_async_4(v_stage + 4 * i, entry + value_offset);
      }
    }
  };
  // Queries of this warp (uniform): a tile inside [latest lowest, earliest position] needs no mask.
  const int warp_first_pos =
      __reduce_min_sync(0xffffffffu, min(live[0] ? pos[0] : INT_MAX, live[1] ? pos[1] : INT_MAX));
  const int warp_last_lowest = __reduce_max_sync(0xffffffffu, max(lowest[0], lowest[1]));
  look_up_entries(key_begin);
  __syncthreads();
  stage_tile(key_begin);

  // Per tile: the stage's float32 K/V become the bf16 tiles, the next tile's copies are issued
  // into the stage, and the warps compute on the bf16 tiles while those copies are in flight.
  for (int tile = key_begin; tile <= last_pos; tile += kKeys) {
    cp_async_wait_all();
    __syncthreads();  // the stage holds this tile; every warp is done with the previous bf16 tiles
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int j = key_of_item(i);
      const int d = 4 * (i - j * chunks);
      float4 kk = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vv = kk;  // keys past the tile's last: zero
      if (tile + j <= last_pos) {
        kk = kv_load4(k_stage + 4 * i);
        vv = kv_load4(v_stage + 4 * i);
      }
      const float kv[2][4] = {{kk.x, kk.y, kk.z, kk.w}, {vv.x, vv.y, vv.z, vv.w}};
#pragma unroll
      for (int which = 0; which < 2; ++which) {
        const Bf16x2Split e01 = split_bf16x2(kv[which][0], kv[which][1]);
        const Bf16x2Split e23 = split_bf16x2(kv[which][2], kv[which][3]);
        uint16_t* dst = (which == 0 ? k_tile : v_tile) + j * stride + d;
        *reinterpret_cast<uint2*>(dst) = make_uint2(e01.hi, e23.hi);
        if constexpr (kSplit) *reinterpret_cast<uint2*>(dst + kKeys * stride) = make_uint2(e01.lo, e23.lo);
      }
    }
    const bool more = tile + kKeys <= last_pos;
    if (more) look_up_entries(tile + kKeys);
    __syncthreads();  // the bf16 tiles are complete, the stage is free, the next entries visible
    if (more) stage_tile(tile + kKeys);
    if (!warp_live) continue;

    // S = Q · Kᵀ: n-tile n is keys 8n..8n+7; B = K rows (b0: dims 2t, 2t+1 of key g). The n-tiles
    // are the inner loop so consecutive MMAs feed different accumulators (the MMAs issue in
    // program order, and back-to-back ones on one accumulator wait out its latency).
    float s[kKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
    const uint16_t* key_rows = k_tile + g * stride + 2 * t;
#pragma unroll
    for (int step = 0; step < kMaxDim / 16; ++step) {
      if (step >= k_steps) break;
      uint32_t b[kKeys / 8][2];
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) {
        const uint16_t* at = key_rows + 8 * n * stride + 16 * step;
        b[n][0] = *reinterpret_cast<const uint32_t*>(at);
        b[n][1] = *reinterpret_cast<const uint32_t*>(at + 8);
      }
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) mma_bf16(s[n], q_hi[step], b[n][0], b[n][1]);
      if constexpr (kSplit) {
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) mma_bf16(s[n], q_lo[step], b[n][0], b[n][1]);
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) {
          const uint16_t* lo = key_rows + 8 * n * stride + 16 * step + kKeys * stride;
          b[n][0] = *reinterpret_cast<const uint32_t*>(lo);
          b[n][1] = *reinterpret_cast<const uint32_t*>(lo + 8);
        }
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) mma_bf16(s[n], q_hi[step], b[n][0], b[n][1]);
      }
    }
    // Online softmax: element (n, 2r + e) is row r's key tile + 8n + 2t + e.
    const bool masked = tile + kKeys - 1 > warp_first_pos || tile < warp_last_lowest;
    float correction[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = tile + 8 * n + 2 * t + e;
          if (masked && (key > pos[r] || key < lowest[r])) s[n][2 * r + e] = -INFINITY;
          tile_max = fmaxf(tile_max, s[n][2 * r + e]);
        }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const float new_max = fmaxf(row_max[r], tile_max);
      // A row that has seen no key yet (new_max -inf) subtracts 0: its p and correction are 0,
      // and its o and sum are still 0.
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      correction[r] = exp2_approx(row_max[r] - base);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float p = exp2_approx(s[n][2 * r + e] - base);
          s[n][2 * r + e] = p;
          sum += p;
        }
      row_sum[r] = row_sum[r] * correction[r] + sum;
      row_max[r] = new_max;
    }
    // Rescale O only when some row's maximum moved (uniform over the warp).
    if (__any_sync(0xffffffffu, correction[0] != 1.0f || correction[1] != 1.0f)) {
#pragma unroll
      for (int j = 0; j < kMaxDim / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[j][e] *= correction[e >> 1];
    }
    // O += P · V over k-steps of 16 keys: S's n-tiles 2s and 2s + 1 are exactly P's A fragment.
#pragma unroll
    for (int step = 0; step < kKeys / 16; ++step) {
      uint32_t p_hi[4], p_lo[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float* pair = &s[2 * step + (i >> 1)][2 * (i & 1)];
        const Bf16x2Split split = split_bf16x2(pair[0], pair[1]);
        p_hi[i] = split.hi;
        p_lo[i] = split.lo;
      }
      // ldmatrix: lane l addresses row (key) 16·step + 8·(matrix & 1) + l % 8, dims + 8·(matrix >> 1).
      // kPairs dim pairs per round: 2 · kPairs independent accumulators between dependent MMAs.
      const int matrix = lane >> 3;
      const uint16_t* v_rows = v_tile + (16 * step + 8 * (matrix & 1) + (lane & 7)) * stride + 8 * (matrix >> 1);
      constexpr int kPairs = 4;
#pragma unroll
      for (int first = 0; first < kMaxDim / 16; first += kPairs) {
        if (first >= k_steps) break;
        uint32_t b[kPairs][4];
#pragma unroll
        for (int i = 0; i < kPairs; ++i)
          if (first + i < k_steps) ldmatrix_x4_trans(b[i], v_rows + 16 * (first + i));
#pragma unroll
        for (int i = 0; i < kPairs; ++i) {
          if (first + i >= k_steps) break;
          mma_bf16(o[2 * (first + i)], p_hi, b[i][0], b[i][1]);
          mma_bf16(o[2 * (first + i) + 1], p_hi, b[i][2], b[i][3]);
        }
        if constexpr (kSplit) {
#pragma unroll
          for (int i = 0; i < kPairs; ++i) {
            if (first + i >= k_steps) break;
            mma_bf16(o[2 * (first + i)], p_lo, b[i][0], b[i][1]);
            mma_bf16(o[2 * (first + i) + 1], p_lo, b[i][2], b[i][3]);
          }
#pragma unroll
          for (int i = 0; i < kPairs; ++i)
            if (first + i < k_steps) ldmatrix_x4_trans(b[i], v_rows + 16 * (first + i) + kKeys * stride);
#pragma unroll
          for (int i = 0; i < kPairs; ++i) {
            if (first + i >= k_steps) break;
            mma_bf16(o[2 * (first + i)], p_hi, b[i][0], b[i][1]);
            mma_bf16(o[2 * (first + i) + 1], p_hi, b[i][2], b[i][3]);
          }
        }
      }
    }
  }
  if (!warp_live) return;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float total = row_sum[r];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    if (!live[r]) continue;
    // A sink joins the denominator (at the larger of its logit and the row's running max).
    const float top = fmaxf(row_max[r], sink_log2[r]);
    const float kept = exp2f(row_max[r] - top);
    const float inv =
        args.value_scale * kept / (total * kept + (sink_log2[r] == -INFINITY ? 0.0f : exp2f(sink_log2[r] - top)));
#pragma unroll
    for (int j = 0; j < kMaxDim / 8; ++j) {
      if (j >= d_tiles) break;
      *reinterpret_cast<float2*>(args.out + out_at[r] + 8 * j + 2 * t) =
          make_float2(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
    }
  }
}

// Head dims the tensor-core kernel takes: whole k-steps of 16, at most kMaxDim.
bool mma_head_dim(int dim) { return dim % 16 == 0 && dim <= kMaxDim; }

// The kernel for a head dim (64 and 128 compiled with it as a constant) and cache element.
template <bool kSplit, typename Kv>
auto kernel_for(int dim) {
  return dim == 128  ? prefill_attention_mma_kernel<kSplit, 128, Kv>
         : dim == 64 ? prefill_attention_mma_kernel<kSplit, 64, Kv>
                     : prefill_attention_mma_kernel<kSplit, 0, Kv>;
}

}  // namespace

int prefill_tile_rows(int head_dim, int group) {
  return std::max(1, (mma_head_dim(head_dim) ? kPrefillMmaQueries : kPrefillQueries) / std::max(1, group));
}

bool prefill_attention_mma_supported(const AttentionArgs& args, int tile_rows) {
  const bool aligned_rows = aligned(args.cache, 16) && args.entry_size % 4 == 0 && args.key_offset % 4 == 0 &&
                            args.value_offset % 4 == 0 && args.kv_head_stride % 4 == 0 && args.q_stride % 2 == 0 &&
                            aligned(args.q, 8);
  return aligned_rows && args.key_dim == args.value_dim && mma_head_dim(args.key_dim) && args.group >= 1 &&
         tile_rows >= 1 && args.group * tile_rows <= kPrefillMmaQueries;
}

void paged_attention_prefill_mma(const GpuExec& exec, const AttentionArgs& args, const int32_t* query_tiles,
                                 int num_tiles, int tile_rows, bool split_bf16) {
  if (num_tiles == 0) return;
  if (!prefill_attention_mma_supported(args, tile_rows)) {
    std::fprintf(stderr, "moeserve: paged_attention_prefill_mma: unsupported shape (head_dim %d, group %d)\n",
                 args.key_dim, args.group);
    std::abort();
  }
  const int warps = ceil_div(args.group * tile_rows, 16);
  const dim3 grid(num_tiles, args.num_heads / args.group);
  const int halves = split_bf16 ? 2 : 1;
  const int bytes = 2 * halves * kKeys * (args.key_dim + kSkew) * int(sizeof(uint16_t)) +
                    2 * kKeys * args.key_dim * (args.cache_fp8 ? 1 : int(sizeof(float)));
  const auto kernel =
      args.cache_fp8 ? (split_bf16 ? kernel_for<true, uint8_t>(args.key_dim) : kernel_for<false, uint8_t>(args.key_dim))
                     : (split_bf16 ? kernel_for<true, float>(args.key_dim) : kernel_for<false, float>(args.key_dim));
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  kernel<<<grid, warps * 32, bytes, stream_of(exec)>>>(args, query_tiles);
  check_launch("paged_attention_prefill_mma");
}

}  // namespace moeserve::cuda
