// CUDA op: MoE dispatch plan — count the rows each expert received, lay the experts' rows out
// contiguously (offsets), and record where every (token, k) entry went, all on the device so a
// decode step needs no host round trip. One block; entries of one expert keep their order
// (token-major), so the plan is deterministic. Also the row gather that applies the plan.
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

void moe_permute(const GpuExec& exec, const MoePermuteArgs& args) {
  if (args.entries == 0) return;
  if (args.experts > kMaxExperts) {
    std::fprintf(stderr, "moeserve: moe_permute: %d experts exceed %d\n", args.experts, kMaxExperts);
    std::abort();
  }
  launch_dependent("moe_permute", moe_permute_kernel, 1, kThreads, 0, exec, args);
}

void gather_rows(const GpuExec& exec, const float* x, int width, const int32_t* rows, int count, float* out_f32,
                 uint16_t* out_bf16) {
  if (count == 0) return;
  const bool vector = width % 4 == 0 && aligned(x, 16) && aligned(out_f32, 16) && aligned(out_bf16, 8);
  launch_dependent("gather_rows", gather_rows_kernel, count, 256, 0, exec, x, width, rows, out_f32, out_bf16,
                   vector);
}

}  // namespace moeserve::cuda
