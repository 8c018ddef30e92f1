// CUDA op: MoE dispatch plan — count the rows each expert received, lay the experts' rows out
// contiguously (offsets), and record where every (token, k) entry went, all on the device so a
// decode step needs no host round trip. Entries of one expert keep their order (token-major), so
// the plan is deterministic. Up to kMoePermuteOneBlockEntries entries (decode) one block does it
// all; prefill-sized plans (8,192 tokens × top-8 = 65,536 entries over 128 experts took 1.7 ms in
// that one block) run three kernels over chunks of kMoePermuteChunk entries, one warp a chunk:
// per-chunk counts, one scan over (expert, chunk), then each chunk places its entries in order.
// Also the row gather that applies the plan.
#include "kernels/cuda/vector.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 1024;

// Phase 1 counts, phase 2 an exclusive scan, phase 3 stable positions: thread i owns a
// contiguous chunk of entries and, per expert, its rank is the count in earlier chunks.
__global__ void moe_permute_kernel(MoePermuteArgs args) {
  start_after_prior_grids();
  __shared__ int counts[kMaxExperts];
  __shared__ int offsets[kMaxExperts + 1];
  for (int e = threadIdx.x; e < args.experts; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < args.entries; i += blockDim.x) atomicAdd(&counts[args.expert_ids[i]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int running = 0;
    for (int e = 0; e < args.experts; ++e) {
      offsets[e] = running;
      running += counts[e];
    }
    offsets[args.experts] = running;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= args.experts; e += blockDim.x) args.offsets[e] = offsets[e];
  if (args.load_counts != nullptr) {
    for (int e = threadIdx.x; e < args.experts; e += blockDim.x) args.load_counts[e] += counts[e];
  }
  // Stable placement: each warp takes one expert at a time and ranks its entries in order.
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  for (int expert = warp; expert < args.experts; expert += blockDim.x >> 5) {
    int next = offsets[expert];
    for (int base = 0; base < args.entries; base += 32) {
      const int i = base + lane;
      const bool mine = i < args.entries && args.expert_ids[i] == expert;
      const unsigned ballot = __ballot_sync(0xffffffffu, mine);
      if (mine) {
        const int pos = next + __popc(ballot & ((1u << lane) - 1u));
        args.positions[i] = pos;
        args.source_rows[pos] = i / args.top_k;
      }
      next += __popc(ballot);
    }
  }
}

constexpr int kChunkWarps = 4;  // chunks (warps) per block of the multi-block kernels

// counts[chunk][e]: entries of chunk `chunk` routed to expert e. Shared per-warp counters.
__global__ void __launch_bounds__(kChunkWarps * 32) permute_count_kernel(MoePermuteArgs args, int chunks) {
  start_after_prior_grids();
  extern __shared__ int warp_counts[];  // [kChunkWarps][experts]
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  for (int i = threadIdx.x; i < kChunkWarps * args.experts; i += blockDim.x) warp_counts[i] = 0;
  __syncthreads();
  const int chunk = blockIdx.x * kChunkWarps + warp;
  int* mine = warp_counts + warp * args.experts;
  if (chunk < chunks) {
    const int end = min(args.entries, (chunk + 1) * kMoePermuteChunk);
    for (int i = chunk * kMoePermuteChunk + lane; i < end; i += 32) atomicAdd(&mine[args.expert_ids[i]], 1);
  }
  __syncwarp();
  if (chunk < chunks) {
    for (int e = lane; e < args.experts; e += 32) args.workspace[int64_t(chunk) * args.experts + e] = mine[e];
  }
}

// One block, a thread per expert: counts[chunk][e] becomes the first position of chunk's
// entries of expert e (offsets[e] + the counts of earlier chunks); offsets and loads written.
__global__ void permute_scan_kernel(MoePermuteArgs args, int chunks) {
  start_after_prior_grids();
  __shared__ int totals[kMaxExperts];
  const int e = threadIdx.x;
  int running = 0;
  if (e < args.experts) {
    for (int chunk = 0; chunk < chunks; ++chunk) {
      int* count = &args.workspace[int64_t(chunk) * args.experts + e];
      const int c = *count;
      *count = running;
      running += c;
    }
    totals[e] = running;
    if (args.load_counts != nullptr) args.load_counts[e] += running;
  }
  __syncthreads();
  if (e == 0) {
    int offset = 0;
    for (int x = 0; x < args.experts; ++x) {
      const int count = totals[x];
      totals[x] = offset;
      args.offsets[x] = offset;
      offset += count;
    }
    args.offsets[args.experts] = offset;
  }
  __syncthreads();
  if (e < args.experts) {
    for (int chunk = 0; chunk < chunks; ++chunk) args.workspace[int64_t(chunk) * args.experts + e] += totals[e];
  }
}

// Each warp walks its chunk 32 entries at a time in order: lanes routed to the same expert rank
// among themselves by __match_any_sync, so every expert's entries keep their order.
__global__ void __launch_bounds__(kChunkWarps * 32) permute_place_kernel(MoePermuteArgs args, int chunks) {
  start_after_prior_grids();
  extern __shared__ int next_position[];  // [kChunkWarps][experts]
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int chunk = blockIdx.x * kChunkWarps + warp;
  if (chunk >= chunks) return;  // a whole warp: the block's barrier-free from here
  int* next = next_position + warp * args.experts;
  for (int e = lane; e < args.experts; e += 32) next[e] = args.workspace[int64_t(chunk) * args.experts + e];
  __syncwarp();
  const int begin = chunk * kMoePermuteChunk;
  const int end = min(args.entries, begin + kMoePermuteChunk);
  for (int base = begin; base < end; base += 32) {
    const int i = base + lane;
    const bool valid = i < end;
    const unsigned active = __ballot_sync(0xffffffffu, valid);
    if (valid) {
      const int expert = args.expert_ids[i];
      const unsigned same = __match_any_sync(active, expert);
      const int pos = next[expert] + __popc(same & ((1u << lane) - 1u));
      args.positions[i] = pos;
      args.source_rows[pos] = i / args.top_k;
      __syncwarp(active);
      if (lane == __ffs(same) - 1) next[expert] += __popc(same);  // one lane per expert
    }
    __syncwarp();
  }
}

// vector: width % 4 == 0 and 16-byte aligned rows, copied as float4s, kGatherBatch loaded per
// thread before any is stored (the final norm's one-row gather of a decode step is one block).
constexpr int kGatherBatch = 4;
__global__ void gather_rows_kernel(const float* x, int width, const int32_t* rows, float* out_f32, uint16_t* out_bf16,
                                   bool vector) {
  start_after_prior_grids();
  const int row = blockIdx.x;
  const float* src = x + static_cast<int64_t>(rows[row]) * width;
  const int64_t dst = static_cast<int64_t>(row) * width;
  if (vector) {
    const int vectors = width / 4;
    for (int base = threadIdx.x; base < vectors; base += kGatherBatch * blockDim.x) {
      float4 v[kGatherBatch];
#pragma unroll
      for (int u = 0; u < kGatherBatch; ++u)
        if (base + u * blockDim.x < vectors) v[u] = reinterpret_cast<const float4*>(src)[base + u * blockDim.x];
#pragma unroll
      for (int u = 0; u < kGatherBatch; ++u) {
        const int i = base + u * blockDim.x;
        if (i >= vectors) break;
        if (out_f32 != nullptr) reinterpret_cast<float4*>(out_f32 + dst)[i] = v[u];
        if (out_bf16 != nullptr) reinterpret_cast<uint2*>(out_bf16 + dst)[i] = to_bf16x4(v[u]);
      }
    }
    return;
  }
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    const float value = src[i];
    if (out_f32 != nullptr) out_f32[dst + i] = value;
    if (out_bf16 != nullptr) out_bf16[dst + i] = float_to_bf16_bits(value);
  }
}

}  // namespace

size_t moe_permute_workspace_ints(int entries, int experts) {
  return entries > kMoePermuteOneBlockEntries ? size_t(ceil_div(entries, kMoePermuteChunk)) * experts : 0;
}

void moe_permute(const GpuExec& exec, const MoePermuteArgs& args) {
  if (args.entries == 0) return;
  if (args.experts > kMaxExperts) {
    std::fprintf(stderr, "moeserve: moe_permute: %d experts exceed %d\n", args.experts, kMaxExperts);
    std::abort();
  }
  if (args.entries <= kMoePermuteOneBlockEntries || args.workspace == nullptr) {
    launch_dependent("moe_permute", moe_permute_kernel, 1, kThreads, 0, exec, args);
    return;
  }
  const int chunks = ceil_div(args.entries, kMoePermuteChunk);
  const int blocks = ceil_div(chunks, kChunkWarps);
  const int shared = kChunkWarps * args.experts * int(sizeof(int));
  launch_dependent("moe_permute (count)", permute_count_kernel, blocks, kChunkWarps * 32, shared, exec, args, chunks);
  launch_dependent("moe_permute (scan)", permute_scan_kernel, 1, kMaxExperts, 0, exec, args, chunks);
  launch_dependent("moe_permute (place)", permute_place_kernel, blocks, kChunkWarps * 32, shared, exec, args, chunks);
}

void gather_rows(const GpuExec& exec, const float* x, int width, const int32_t* rows, int count, float* out_f32,
                 uint16_t* out_bf16) {
  if (count == 0) return;
  const bool vector = width % 4 == 0 && aligned(x, 16) && aligned(out_f32, 16) && aligned(out_bf16, 8);
  launch_dependent("gather_rows", gather_rows_kernel, count, 256, 0, exec, x, width, rows, out_f32, out_bf16,
                   vector);
}

}  // namespace moeserve::cuda
