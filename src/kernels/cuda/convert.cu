// CUDA op: dtype casts between float32 activations and bf16 GEMM inputs, block-scaled FP8 weights
// to bf16 for cuBLAS, and the device-side
// random weights of --load-format dummy (a counter-based hash → Box-Muller normal, so any
// element can be generated independently and a 12B-parameter model fills in a second).
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8.cuh"

namespace moeserve::cuda {

namespace {

__global__ void to_bf16_kernel(const float* x, int64_t count, uint16_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = float_to_bf16_bits(x[i]);
  }
}

__global__ void to_f32_kernel(const uint16_t* x, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = bf16_bits_to_float(x[i]);
  }
}

__global__ void to_bf16_split_kernel(const float* x, int64_t count, uint16_t* hi, uint16_t* lo) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Bf16Split split = split_bf16(x[i]);
    hi[i] = split.hi;
    lo[i] = split.lo;
  }
}

// 16 weights of a row per thread (cols % 16 == 0, block % 16 == 0, offset % 16 == 0).
__global__ void fp8_to_bf16_kernel(const uint8_t* fp8, const float* scale, int64_t rows, int cols, int block,
                                   int offset, uint16_t* out) {
  const int spans = cols / 16;
  const int scale_cols = (offset + cols + block - 1) / block;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * spans;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / spans;
    const int k = 16 * static_cast<int>(i % spans);
    uint4 bf16[2];
    fp8_e4m3_to_bf16x16(*reinterpret_cast<const uint4*>(fp8 + row * cols + k), bf16,
                        scale[row * scale_cols + (offset + k) / block]);
    uint4* dst = reinterpret_cast<uint4*>(out + row * cols + k);
    dst[0] = bf16[0];
    dst[1] = bf16[1];
  }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_random_kernel(uint16_t* out, int64_t count, uint64_t seed, float stddev, float constant) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float value = constant;
    if (stddev != 0.0f) {
      const uint64_t bits = mix64(seed ^ mix64(static_cast<uint64_t>(i)));
      const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
      const float u2 = static_cast<float>((bits >> 16) & 0xffffffu) * (1.0f / 16777216.0f);
      value = stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    }
    out[i] = float_to_bf16_bits(value);
  }
}

// Uniform random bytes (from the same hash) with only `mask`'s bits, or `constant` bytes where random
// is false.
__global__ void fill_random_bytes_kernel(uint8_t* out, int64_t count, uint64_t seed, bool random, uint8_t constant,
                                         uint8_t mask) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = random ? static_cast<uint8_t>(mix64(seed ^ mix64(static_cast<uint64_t>(i))) >> 56) & mask : constant;
  }
}

int grid_for(int64_t count) { return static_cast<int>(std::min<int64_t>((count + 255) / 256, 65536)); }

}  // namespace

void to_bf16(const GpuExec& exec, const float* x, int64_t count, uint16_t* out) {
  if (count == 0) return;
  to_bf16_kernel<<<grid_for(count), 256, 0, stream_of(exec)>>>(x, count, out);
  check_launch("to_bf16");
}

void to_f32(const GpuExec& exec, const uint16_t* x, int64_t count, float* out) {
  if (count == 0) return;
  to_f32_kernel<<<grid_for(count), 256, 0, stream_of(exec)>>>(x, count, out);
  check_launch("to_f32");
}

void to_bf16_split(const GpuExec& exec, const float* x, int64_t count, uint16_t* hi, uint16_t* lo) {
  if (count == 0) return;
  to_bf16_split_kernel<<<grid_for(count), 256, 0, stream_of(exec)>>>(x, count, hi, lo);
  check_launch("to_bf16_split");
}

void fp8_to_bf16(const GpuExec& exec, const uint8_t* fp8, const ops::Fp8Scales& scales, int64_t rows, int cols,
                 uint16_t* out) {
  if (rows == 0 || cols == 0) return;
  if (cols % 16 != 0 || scales.block % 16 != 0 || scales.offset % 16 != 0) {
    std::fprintf(stderr, "moeserve: fp8_to_bf16 needs K, scale blocks and offset multiples of 16 (%d, %d, %d)\n", cols,
                 scales.block, scales.offset);
    std::abort();
  }
  fp8_to_bf16_kernel<<<grid_for(rows * (cols / 16)), 256, 0, stream_of(exec)>>>(fp8, scales.scale, rows, cols,
                                                                                scales.block, scales.offset, out);
  check_launch("fp8_to_bf16");
}

void fill_random_bf16(const GpuExec& exec, uint16_t* out, int64_t count, uint64_t seed, float stddev, float constant) {
  if (count == 0) return;
  fill_random_kernel<<<grid_for(count), 256, 0, stream_of(exec)>>>(out, count, seed, stddev, constant);
  check_launch("fill_random_bf16");
}

void fill_random_bytes(const GpuExec& exec, uint8_t* out, int64_t count, uint64_t seed, bool random, uint8_t constant,
                       uint8_t mask) {
  if (count == 0) return;
  fill_random_bytes_kernel<<<grid_for(count), 256, 0, stream_of(exec)>>>(out, count, seed, random, constant, mask);
  check_launch("fill_random_bytes");
}

}  // namespace moeserve::cuda
