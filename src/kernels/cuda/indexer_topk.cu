// CUDA op: DeepSeek-V3.2's lightning indexer (ops::indexer_topk). One block per query row: its
// keys in tiles, each key's score by one warp (lanes over head_dim, the heads in turn, the query
// read through L1), written beside the best kept so far into a shared buffer of kBuffer (score,
// position) pairs that a bitonic sort orders as the CPU does (score descending, then position
// ascending), the first topk kept; at the end the kept positions sorted ascending. A row with at
// most topk keys keeps them all unscored. Exact but SIMT: a longer context costs one sort of the
// buffer per tile of kBuffer - topk keys.
#include <climits>

#include "kernels/cuda/paged_cache.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kBuffer = 2 * kMaxIndexTopk;
constexpr int kThreads = 512;

// Bitonic sort of the shared (score, position) pairs: by score descending then position
// ascending (by_score), or by position ascending.
__device__ void bitonic_sort(float* score, int32_t* position, bool by_score) {
  const auto before = [&](int a, int b) {  // pair a belongs before pair b
    if (!by_score) return position[a] < position[b];
    return score[a] > score[b] || (score[a] == score[b] && position[a] < position[b]);
  };
  for (int size = 2; size <= kBuffer; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < kBuffer; i += blockDim.x) {
        const int j = i ^ stride;
        if (j <= i) continue;
        const bool ordered_up = (i & size) == 0;
        if (ordered_up ? before(j, i) : before(i, j)) {
          const float s = score[i];
          score[i] = score[j];
          score[j] = s;
          const int32_t p = position[i];
          position[i] = position[j];
          position[j] = p;
        }
      }
      __syncthreads();
    }
  }
}

template <typename Kv>
__global__ void __launch_bounds__(kThreads) indexer_topk_kernel(IndexerArgs args) {
  start_after_prior_grids();
  __shared__ float score[kBuffer];
  __shared__ int32_t position[kBuffer];
  const int row = blockIdx.x;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int last = args.positions[row];
  int32_t* out = args.out + static_cast<int64_t>(row) * args.topk;
  if (last < args.topk) {  // every key is kept: no score decides anything
    for (int i = threadIdx.x; i < args.topk; i += kThreads) out[i] = i <= last ? i : -1;
    return;
  }
  const int32_t* table = args.block_tables + args.table_offsets[row];
  const float* q = args.q + row * args.q_stride;
  const float* w = args.weights + row * args.weights_stride;
  const int tile = kBuffer - args.topk;
  int kept = 0;
  for (int begin = 0; begin <= last; begin += tile) {
    const int count = min(tile, last + 1 - begin);
    for (int i = warp; i < count; i += kThreads / 32) {
      const int key = begin + i;
      const int64_t slot = static_cast<int64_t>(table[key / args.block_size]) * args.block_size + key % args.block_size;
      const Kv* k = kv_base<Kv>(args.cache) + slot * args.entry_size + args.key_offset;
      float total = 0.0f;
      for (int h = 0; h < args.heads; ++h) {
        const float* qh = q + h * args.head_dim;
        float dot = 0.0f;
        for (int d = lane; d < args.head_dim; d += 32) dot += qh[d] * kv_load(k + d);
        dot = warp_sum(dot);
        total += w[h] * args.weight_scale * fmaxf(0.0f, dot * args.scale);
      }
      if (lane == 0) {
        score[kept + i] = total;
        position[kept + i] = key;
      }
    }
    for (int i = kept + count + threadIdx.x; i < kBuffer; i += kThreads) {
      score[i] = -INFINITY;
      position[i] = INT_MAX;
    }
    __syncthreads();
    bitonic_sort(score, position, true);
    kept = min(args.topk, kept + count);
  }
  for (int i = kept + threadIdx.x; i < kBuffer; i += kThreads) position[i] = INT_MAX;
  __syncthreads();
  bitonic_sort(score, position, false);
  for (int i = threadIdx.x; i < args.topk; i += kThreads) out[i] = i < kept ? position[i] : -1;
}

}  // namespace

void indexer_topk(const GpuExec& exec, const IndexerArgs& args) {
  if (args.tokens == 0) return;
  if (args.topk <= 0 || args.topk > kMaxIndexTopk) {
    std::fprintf(stderr, "moeserve: indexer_topk: topk %d is outside 1..%d\n", args.topk, kMaxIndexTopk);
    std::abort();
  }
  launch_dependent("indexer_topk", args.cache_fp8 ? indexer_topk_kernel<uint8_t> : indexer_topk_kernel<float>,
                   dim3(args.tokens), dim3(kThreads), 0, exec, args);
}

}  // namespace moeserve::cuda
