// CUDA op: causal paged attention for prefill-sized batches on CUDA cores, float32 throughout
// (GQA, head_dim <= 128; attention_prefill_mma.cu is the tensor-core version for head dims that
// are multiples of 16): the rows of one sequence are cut into query tiles of consecutive rows,
// and one block takes a tile × one kv head, i.e. tile rows × group
// query vectors that share every K/V tile it loads into shared memory (32 keys at a time) — so
// K/V is read once per query tile instead of once per query row as in paged_attention. Online softmax per query row.
#include "kernels/cuda/paged_cache.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kKeys = 32;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxQueries = kPrefillQueries;      // tile rows × group
constexpr int kQueriesPerWarp = kMaxQueries / 8;  // score rows per warp
// Row padding (floats) of the staged K and P tiles: keeps rows 16-byte aligned for float4 reads
// and spreads a warp's rows over distinct banks.
constexpr int kPad = 4;

struct Shared {
  float* q;  // [queries][head_dim]
  float* k;  // [kKeys][head_dim + kPad]
  float* v;  // [kKeys][head_dim]
  float* p;  // [queries][kKeys + kPad]
};

template <typename Kv>
__global__ void __launch_bounds__(kThreads) prefill_attention_kernel(AttentionArgs args, const int32_t* tiles) {
  extern __shared__ __align__(16) float smem[];
  const int dim = args.key_dim;
  const int group = args.group;
  const int tile_rows = tiles[2 * blockIdx.x + 1];
  const int queries = tile_rows * group;
  Shared s{smem, nullptr, nullptr, nullptr};
  s.k = s.q + kMaxQueries * dim;
  s.v = s.k + kKeys * (dim + kPad);
  s.p = s.v + kKeys * dim;
  const int first_row = tiles[2 * blockIdx.x];
  const int kv_head = blockIdx.y;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  // Query q = row_in_tile * group + g is head kv_head * group + g of row first_row + row_in_tile.
  for (int i = threadIdx.x; i < queries * dim; i += kThreads) {
    const int query = i / dim, d = i % dim;
    const int row = first_row + query / group;
    const int head = kv_head * group + query % group;
    s.q[query * dim + d] =
        args.q[int64_t(row) * args.q_stride + int64_t(head) * dim + d] * row_scale(args, args.positions[row]);
  }
  const KeyRange keys = key_range(args, first_row, tile_rows, kv_head);
  const int key_begin = keys.first, last_pos = keys.last, key_offset = keys.key_offset;
  const int value_offset = keys.value_offset;
  // P·V ownership: lane l accumulates dims [4l, 4l + 4) of the warp's queries warp + 8r, so
  // per key a thread reads 8 broadcast probabilities and one float4 of V for 32 FMAs.
  // The running maximum, denominator and this tile's correction of query warp + 8r are kept by
  // every lane of the warp alike (the warp reductions give each lane the same values).
  const int out_d = lane * 4;
  float acc[kQueriesPerWarp][4];
  float maxima[kQueriesPerWarp], denom[kQueriesPerWarp], corr[kQueriesPerWarp];
#pragma unroll
  for (int r = 0; r < kQueriesPerWarp; ++r) {
    maxima[r] = -INFINITY;
    denom[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[r][e] = 0.0f;
  }

  for (int tile = key_begin; tile <= last_pos; tile += kKeys) {
    __syncthreads();  // the previous tile's K/V/P are consumed
    for (int i = threadIdx.x; i < kKeys * dim; i += kThreads) {
      const int j = i / dim, d = i % dim;
      const int key = tile + j;
      float kv_k = 0.0f, kv_v = 0.0f;
      if (key <= last_pos) {
        const Kv* entry = cache_entry<Kv>(args, keys.table, key);
        kv_k = kv_load(entry + key_offset + d);
        kv_v = kv_load(entry + value_offset + d);
      }
      s.k[j * (dim + kPad) + d] = kv_k;
      s.v[j * dim + d] = kv_v;
    }
    __syncthreads();
    // Scores: lane = key, warp w takes queries w, w + 8, ...
    float score[kQueriesPerWarp];
#pragma unroll
    for (int qi = 0; qi < kQueriesPerWarp; ++qi) score[qi] = 0.0f;
    // Four dims per step: one float4 of the lane's key, one broadcast float4 per query.
    const float* k_row = s.k + lane * (dim + kPad);
    for (int d = 0; d < dim; d += 4) {
      const float4 kd = *reinterpret_cast<const float4*>(k_row + d);
#pragma unroll
      for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
        const int query = warp + 8 * qi;
        if (query < queries) {
          const float4 qd = *reinterpret_cast<const float4*>(s.q + query * dim + d);
          score[qi] += qd.x * kd.x + qd.y * kd.y + qd.z * kd.z + qd.w * kd.w;
        }
      }
    }
    // Online softmax per query row (the warp owns its rows).
#pragma unroll
    for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
      const int query = warp + 8 * qi;
      if (query >= queries) break;  // uniform over the warp
      const int pos = args.positions[first_row + query / group];
      const int key = tile + lane;
      const int lowest = lowest_key(args, pos);
      const bool valid = key <= pos && key >= lowest;
      const float sc = valid ? score[qi] : -INFINITY;
      const float old_max = maxima[qi];
      const float new_max = fmaxf(old_max, warp_max(sc));
      float p = 0.0f, correction = 1.0f;
      if (new_max != -INFINITY) {
        p = valid ? expf(sc - new_max) : 0.0f;
        correction = expf(old_max - new_max);
      }
      const float sum = warp_sum(p);
      s.p[query * (kKeys + kPad) + lane] = p;
      corr[qi] = correction;
      denom[qi] = denom[qi] * correction + sum;
      maxima[qi] = new_max;
    }
    __syncthreads();
    // O = O · correction + P · V.
    if (out_d < dim) {
#pragma unroll
      for (int r = 0; r < kQueriesPerWarp; ++r) {
        const int query = warp + 8 * r;
        if (query >= queries) break;
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[r][e] *= corr[r];
      }
      // Four keys per step: their V float4s, one broadcast float4 of probabilities per query.
      for (int j = 0; j < kKeys; j += 4) {
        float4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = *reinterpret_cast<const float4*>(s.v + (j + u) * dim + out_d);
#pragma unroll
        for (int r = 0; r < kQueriesPerWarp; ++r) {
          const int query = warp + 8 * r;
          if (query >= queries) break;
          const float4 p = *reinterpret_cast<const float4*>(s.p + query * (kKeys + kPad) + j);
          const float pu[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            acc[r][0] += pu[u] * v[u].x;
            acc[r][1] += pu[u] * v[u].y;
            acc[r][2] += pu[u] * v[u].z;
            acc[r][3] += pu[u] * v[u].w;
          }
        }
      }
    }
  }
  __syncthreads();
  if (out_d < dim) {
#pragma unroll
    for (int r = 0; r < kQueriesPerWarp; ++r) {
      const int query = warp + 8 * r;
      if (query >= queries) break;
      const int row = first_row + query / group;
      const int head = kv_head * group + query % group;
      // A sink joins the softmax's denominator (at the larger of its logit and the running max).
      const float sink = sink_logit(args, head);
      const float top = fmaxf(maxima[r], sink);
      const float kept = expf(maxima[r] - top);
      const float inv = args.value_scale * kept / (denom[r] * kept + (sink == -INFINITY ? 0.0f : expf(sink - top)));
      float* dst = args.out + (int64_t(row) * args.num_heads + head) * dim + out_d;
#pragma unroll
      for (int e = 0; e < 4; ++e) dst[e] = acc[r][e] * inv;
    }
  }
}

size_t shared_bytes(int dim) {
  return sizeof(float) *
         (size_t(kMaxQueries) * dim + kKeys * (dim + kPad) + kKeys * dim + kMaxQueries * (kKeys + kPad));
}

}  // namespace

bool prefill_attention_supported(const AttentionArgs& args, int tile_rows) {
  return args.key_dim == args.value_dim && args.key_dim <= kMaxHeadDim && args.key_dim % 4 == 0 &&
         args.group >= 1 && tile_rows >= 1 && args.group * tile_rows <= kMaxQueries;
}

void paged_attention_prefill(const GpuExec& exec, const AttentionArgs& args, const int32_t* query_tiles,
                             int num_tiles, int tile_rows) {
  if (num_tiles == 0) return;
  if (!prefill_attention_supported(args, tile_rows)) {
    std::fprintf(stderr, "moeserve: paged_attention_prefill: unsupported shape (head_dim %d, group %d)\n", args.key_dim,
                 args.group);
    std::abort();
  }
  const size_t bytes = shared_bytes(args.key_dim);
  static_assert(kMaxQueries % 8 == 0);
  const dim3 grid(num_tiles, args.num_heads / args.group);
  const auto kernel = args.cache_fp8 ? prefill_attention_kernel<uint8_t> : prefill_attention_kernel<float>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  kernel<<<grid, kThreads, bytes, stream_of(exec)>>>(args, query_tiles);
  check_launch("paged_attention_prefill");
}

}  // namespace moeserve::cuda
