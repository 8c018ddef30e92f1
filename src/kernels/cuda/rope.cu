// CUDA op: rotary position embedding in place (ops::rope): half-split or interleaved pairs,
// cos/sin from float32 position × inv_freq as the CPU reference computes them — once per
// (token, frequency) into shared memory, since every head of a token shares them. Optionally
// also writes each token's cache entry afterwards (ops::kv_write fused, one launch fewer per layer).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) rope_kernel(RopeArgs args) {
  start_after_prior_grids();
  extern __shared__ float trig[];  // [half] cos · factor, then [half] sin · factor
  const int token = blockIdx.x;
  const float position = static_cast<float>(args.positions[token]);
  for (int i = threadIdx.x; i < args.half; i += kThreads) {
    const float angle = position * args.inv_freq[i];
    trig[i] = cosf(angle) * args.attention_factor;
    trig[args.half + i] = sinf(angle) * args.attention_factor;
  }
  __syncthreads();
  float* row = args.x + static_cast<int64_t>(token) * args.token_stride;
  const int pairs = args.heads * args.half;
  for (int item = threadIdx.x; item < pairs; item += kThreads) {
    const int head = item / args.half;
    const int i = item % args.half;
    const float c = trig[i];
    const float s = trig[args.half + i];
    float* v = row + static_cast<int64_t>(head) * args.head_stride + args.rotary_offset;
    const int a = args.interleaved ? 2 * i : i;
    const int b = args.interleaved ? 2 * i + 1 : i + args.half;
    const float x0 = v[a];
    const float x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x1 * c + x0 * s;
  }
  if (args.cache == nullptr) return;
  __syncthreads();  // the whole row is rotated
  float* dst = args.cache + static_cast<int64_t>(args.slots[token]) * args.entry_size;
  const float* entry = row + args.entry_offset;
  for (int i = threadIdx.x; i < args.entry_size; i += kThreads) dst[i] = entry[i];
}

}  // namespace

void rope(const GpuExec& exec, const RopeArgs& args) {
  if (args.tokens == 0 || (args.half == 0 && args.cache == nullptr)) return;
  launch_dependent("rope", rope_kernel, args.tokens, kThreads, 2 * args.half * sizeof(float), exec, args);
}

}  // namespace moeserve::cuda
