// CUDA op: sampling on the device (runtime/sampler.h's apply_edits + sample_with_uniform, one
// row per TokenChoice), so a sampling decode step copies back one id per sequence instead of
// its logits row. Three launches over the chosen rows:
//   1. prepare: each row copied into keys [rows, vocab] (−0 made +0, as the host's comparison
//      sees them), its edits applied with the host's float operations (no contraction), ids
//      [rows, vocab] = 0..vocab−1;
//   2. CUB's segmented radix sort, descending and stable: the host's stable_sort order (lowest
//      id first on ties);
//   3. pick: one block per row walks the sorted candidates in chunks of kChunk — the total of
//      exp(logit / T − max) (in double, as the host) over top-k, the top-p cut (the first
//      cumulative probability ≥ top_p), the min-p cut (the first probability below min_p · p₀),
//      then the first cumulative probability ≥ uniform × kept total; and, when asked (rows
//      without edits, so the sorted row is the raw one), compute_logprobs' log-softmax values.
// The host sums sequentially and the device by block scans, so the two agree except where a
// draw or a cut lands within rounding (~1e-16 relative) of a boundary.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <climits>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;  // consecutive candidates per thread in a chunk
constexpr int kChunk = kThreads * kItems;

size_t align256(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

struct Workspace {
  float* keys_in;
  float* keys_out;
  int32_t* ids_in;
  int32_t* ids_out;
  int32_t* offsets;  // [rows + 1]: row r's candidates are [offsets[r], offsets[r + 1])
  void* sort_temp;
  size_t sort_temp_bytes;
};

size_t sort_temp_bytes(int rows, int64_t vocab) {
  size_t bytes = 0;
  const int items = static_cast<int>(rows * vocab);
  cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                     static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                     static_cast<int32_t*>(nullptr), items, rows,
                                                     static_cast<const int32_t*>(nullptr),
                                                     static_cast<const int32_t*>(nullptr));
  return bytes;
}

// Carves the workspace (base null: only sizes it); returns the bytes used.
size_t carve(void* base, int rows, int64_t vocab, size_t temp_bytes, Workspace* out) {
  const size_t values = static_cast<size_t>(rows) * vocab * 4;
  char* at = static_cast<char*>(base);
  size_t used = 0;
  auto take = [&](size_t bytes) {
    void* p = at == nullptr ? nullptr : at + used;
    used += align256(bytes);
    return p;
  };
  Workspace w{};
  w.keys_in = static_cast<float*>(take(values));
  w.keys_out = static_cast<float*>(take(values));
  w.ids_in = static_cast<int32_t*>(take(values));
  w.ids_out = static_cast<int32_t*>(take(values));
  w.offsets = static_cast<int32_t*>(take((rows + 1) * sizeof(int32_t)));
  w.sort_temp = take(temp_bytes);
  w.sort_temp_bytes = temp_bytes;
  if (out != nullptr) *out = w;
  return used;
}

__global__ void __launch_bounds__(kThreads)
    prepare_kernel(const float* logits, int64_t vocab, const SampleChoice* choices, int rows, const SampleEdit* edits,
                   float* keys, int32_t* ids, int32_t* offsets) {
  const SampleChoice c = choices[blockIdx.x];
  const float* src = logits + c.row * vocab;
  float* key = keys + blockIdx.x * vocab;
  int32_t* id = ids + blockIdx.x * vocab;
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    key[j] = src[j] + 0.0f;  // −0 → +0: the sort orders bits, the host compares values
    id[j] = static_cast<int32_t>(j);
  }
  if (threadIdx.x == 0) {
    offsets[blockIdx.x] = static_cast<int32_t>(blockIdx.x * vocab);
    if (blockIdx.x == rows - 1) offsets[rows] = static_cast<int32_t>(rows * vocab);
  }
  __syncthreads();
  // apply_edits, with the host's float operations in its order (each edit is a distinct token).
  for (int e = c.edit_begin + threadIdx.x; e < c.edit_end; e += kThreads) {
    const SampleEdit edit = edits[e];
    float logit = key[edit.token];
    if (edit.masked) {
      logit = -INFINITY;
    } else {
      const float r = c.repetition_penalty;
      if (edit.seen && r != 1.0f) logit = logit > 0.0f ? __fdiv_rn(logit, r) : __fmul_rn(logit, r);
      if (edit.output_count > 0) {
        logit = __fsub_rn(logit, __fadd_rn(__fmul_rn(c.frequency_penalty, static_cast<float>(edit.output_count)),
                                           c.presence_penalty));
      }
    }
    key[edit.token] = logit + 0.0f;
  }
}

struct PickShared {
  union {
    cub::BlockReduce<double, kThreads>::TempStorage sum;
    cub::BlockReduce<int, kThreads>::TempStorage min;
    cub::BlockScan<double, kThreads>::TempStorage scan;
  } temp;
  double value;
  int index;
};

// Σ over the block of each thread's `value`; every thread gets it.
__device__ double block_total(double value, PickShared& shared) {
  const double total = cub::BlockReduce<double, kThreads>(shared.temp.sum).Sum(value);
  if (threadIdx.x == 0) shared.value = total;
  __syncthreads();
  const double out = shared.value;
  __syncthreads();
  return out;
}

struct Least {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};

// The least of each thread's `index`; every thread gets it.
__device__ int block_least(int index, PickShared& shared) {
  const int least = cub::BlockReduce<int, kThreads>(shared.temp.min).Reduce(index, Least{});
  if (threadIdx.x == 0) shared.index = least;
  __syncthreads();
  const int out = shared.index;
  __syncthreads();
  return out;
}

// The probabilities of one sorted row: p(j) = exp(key[j] / T − max) / total.
struct SortedRow {
  const float* key;
  float temperature;
  float max_scaled;  // key[0] / T
  double total;
  __device__ double weight(int j) const {
    return exp(static_cast<double>(__fsub_rn(__fdiv_rn(key[j], temperature), max_scaled)));
  }
  __device__ double prob(int j) const { return weight(j) / total; }
};

// The first j < n whose cumulative probability p(0) + … + p(j) reaches target, or −1.
__device__ int first_cumulative_at_least(const SortedRow& row, int n, double target, PickShared& shared) {
  double carry = 0.0;
  for (int base = 0; base < n; base += kChunk) {
    double p[kItems];
    double mine = 0.0;
    const int first = base + threadIdx.x * kItems;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      p[k] = first + k < n ? row.prob(first + k) : 0.0;
      mine += p[k];
    }
    double before = 0.0, chunk = 0.0;
    cub::BlockScan<double, kThreads>(shared.temp.scan).ExclusiveSum(mine, before, chunk);
    __syncthreads();
    int found = INT_MAX;
    double cumulative = carry + before;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      cumulative += p[k];
      if (found == INT_MAX && first + k < n && cumulative >= target) found = first + k;
    }
    const int least = block_least(found, shared);
    if (least != INT_MAX) return least;
    carry += chunk;
  }
  return -1;
}

// The sampled candidate (index into the sorted row) with temperature > 0.
__device__ int sample_sorted(const SampleChoice& c, const float* key, int64_t vocab, PickShared& shared) {
  int keep = c.top_k > 0 && c.top_k < vocab ? c.top_k : static_cast<int>(vocab);
  SortedRow row{key, c.temperature, __fdiv_rn(key[0], c.temperature), 1.0};
  double mine = 0.0;
  for (int j = threadIdx.x; j < keep; j += kThreads) mine += row.weight(j);
  row.total = block_total(mine, shared);
  if (c.top_p < 1.0f) {
    const int cut = first_cumulative_at_least(row, keep, static_cast<double>(c.top_p), shared);
    if (cut >= 0) keep = cut + 1;
  }
  if (c.min_p > 0.0f) {
    const double threshold = static_cast<double>(c.min_p) * row.prob(0);
    int below = INT_MAX;
    for (int j = 1 + threadIdx.x; j < keep; j += kThreads) {
      if (row.prob(j) < threshold) {
        below = j;
        break;
      }
    }
    const int least = block_least(below, shared);
    if (least != INT_MAX) keep = least;
  }
  mine = 0.0;
  for (int j = threadIdx.x; j < keep; j += kThreads) mine += row.prob(j);
  const double kept_total = block_total(mine, shared);
  const int picked = first_cumulative_at_least(row, keep, c.uniform * kept_total, shared);
  return picked >= 0 ? picked : keep - 1;
}

__global__ void __launch_bounds__(kThreads) pick_kernel(const float* keys, const int32_t* ids, int64_t vocab,
                                                        const SampleChoice* choices, int32_t* out,
                                                        SampleLogprobs* logprobs_out) {
  __shared__ PickShared shared;
  const SampleChoice c = choices[blockIdx.x];
  const float* key = keys + blockIdx.x * vocab;
  const int32_t* id = ids + blockIdx.x * vocab;
  // Greedy after the edits: the first of the sorted row.
  const int picked = c.temperature <= 0.0f ? 0 : sample_sorted(c, key, vocab, shared);
  if (threadIdx.x == 0) out[c.row] = id[picked];
  if (c.logprobs < 0 || logprobs_out == nullptr) return;  // uniform over the block
  // compute_logprobs on the (unedited, so raw) sorted row: log_softmax with the host's operations.
  const float max_logit = key[0];
  double mine = 0.0;
  for (int j = threadIdx.x; j < vocab; j += kThreads)
    mine += exp(static_cast<double>(__fsub_rn(key[j], max_logit)));
  const double sum = block_total(mine, shared);
  if (threadIdx.x != 0) return;
  const float normalizer = __fadd_rn(max_logit, static_cast<float>(log(sum)));
  SampleLogprobs& lp = logprobs_out[blockIdx.x];
  lp.logprob = __fsub_rn(key[picked], normalizer);
  lp.top_count = min(static_cast<int64_t>(min(c.logprobs, kMaxSampleLogprobs)), vocab);
  for (int j = 0; j < lp.top_count; ++j) {
    lp.top_ids[j] = id[j];
    lp.top_logprobs[j] = __fsub_rn(key[j], normalizer);
  }
}

}  // namespace

size_t sample_rows_workspace_bytes(int rows, int64_t vocab) {
  return carve(nullptr, rows, vocab, sort_temp_bytes(rows, vocab), nullptr);
}

void sample_rows(const GpuExec& exec, const float* logits, int64_t vocab, const SampleChoice* choices, int rows,
                 const SampleEdit* edits, void* workspace, size_t workspace_bytes, int32_t* out,
                 SampleLogprobs* logprobs_out) {
  if (rows == 0) return;
  const size_t temp_bytes = sort_temp_bytes(rows, vocab);
  Workspace w;
  if (carve(workspace, rows, vocab, temp_bytes, &w) > workspace_bytes) {
    std::fprintf(stderr, "moeserve: sample_rows needs more workspace than it was given\n");
    std::abort();
  }
  const cudaStream_t stream = stream_of(exec);
  prepare_kernel<<<rows, kThreads, 0, stream>>>(logits, vocab, choices, rows, edits, w.keys_in, w.ids_in, w.offsets);
  check_launch("sample_rows.prepare");
  size_t bytes = w.sort_temp_bytes;
  const cudaError_t sorted = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      w.sort_temp, bytes, w.keys_in, w.keys_out, w.ids_in, w.ids_out, static_cast<int>(rows * vocab), rows,
      w.offsets, w.offsets + 1, 0, 32, stream);
  if (sorted != cudaSuccess) {
    std::fprintf(stderr, "moeserve: sample_rows' sort failed: %s\n", cudaGetErrorString(sorted));
    std::abort();
  }
  pick_kernel<<<rows, kThreads, 0, stream>>>(w.keys_out, w.ids_out, vocab, choices, out, logprobs_out);
  check_launch("sample_rows.pick");
}

}  // namespace moeserve::cuda
