// CUDA op: dynamic FP8 activation quantization, the input side of a W8A8 GEMM. Each row's groups
// of 128 columns get their own scale, amax / 448 (with ue8m0: the power of two at or above it),
// and its values are divided by it and rounded to e4m3 (nearest even, saturating), exactly as
// ops::quantize_activations_fp8 emulates it on the CPU. With gate_up, the input is SwiGLU's
// silu(gate) · up rounded to bf16, read from a bf16 [gate | up] row (the experts' gate/up
// product): silu_mul's bf16 output, without writing it.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8.cuh"

namespace moeserve::cuda {

namespace {

// One warp per (row, group of 128 columns), 4 consecutive values per lane. Rows in
// [rows, padded_rows) are written as zeros with scale 1.
__global__ void quantize_fp8_kernel(const float* x_f32, const uint16_t* x_bf16, bool gate_up, int64_t rows,
                                    int64_t padded_rows, int k, bool ue8m0, uint8_t* out, float* scales) {
  const int groups = k / kFp8Group;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= padded_rows * groups) return;
  const int64_t row = warp / groups;
  const int group = static_cast<int>(warp % groups);
  const int64_t at = row * k + group * kFp8Group + 4 * lane;
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (row < rows) {
    if (x_f32 != nullptr) {
      const float4 four = *reinterpret_cast<const float4*>(x_f32 + at);
      v[0] = four.x, v[1] = four.y, v[2] = four.z, v[3] = four.w;
    } else if (gate_up) {  // x_bf16 [rows, 2k]
      const int64_t gate_at = at + row * k;
      const uint2 g = *reinterpret_cast<const uint2*>(x_bf16 + gate_at);
      const uint2 u = *reinterpret_cast<const uint2*>(x_bf16 + gate_at + k);
      const uint32_t gs[4] = {g.x & 0xffffu, g.x >> 16, g.y & 0xffffu, g.y >> 16};
      const uint32_t us[4] = {u.x & 0xffffu, u.x >> 16, u.y & 0xffffu, u.y >> 16};
      for (int i = 0; i < 4; ++i) {
        const float value = glu(bf16_bits_to_float(gs[i]), bf16_bits_to_float(us[i]), ops::GluParams{});
        v[i] = bf16_bits_to_float(float_to_bf16_bits(value));
      }
    } else {
      const uint2 four = *reinterpret_cast<const uint2*>(x_bf16 + at);
      v[0] = bf16_bits_to_float(four.x & 0xffffu), v[1] = bf16_bits_to_float(four.x >> 16);
      v[2] = bf16_bits_to_float(four.y & 0xffffu), v[3] = bf16_bits_to_float(four.y >> 16);
    }
  }
  float scale;
  *reinterpret_cast<uint32_t*>(out + at) = quantize_fp8_warp_group(v, ue8m0, scale);
  if (lane == 0) scales[group * padded_rows + row] = scale;
}

}  // namespace

void quantize_fp8_rows(const GpuExec& exec, const float* x_f32, const uint16_t* x_bf16, int64_t rows,
                       int64_t padded_rows, int k, bool ue8m0, uint8_t* out, float* scales, bool gate_up) {
  if (padded_rows == 0) return;
  if (k % kFp8Group != 0 || (x_f32 == nullptr) == (x_bf16 == nullptr) || padded_rows < rows ||
      (gate_up && x_bf16 == nullptr)) {
    std::fprintf(stderr, "moeserve: quantize_fp8_rows needs K a multiple of %d and one input (K=%d)\n", kFp8Group, k);
    std::abort();
  }
  const int64_t threads = padded_rows * (k / kFp8Group) * 32;
  const int64_t blocks = (threads + 255) / 256;
  quantize_fp8_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream_of(exec)>>>(x_f32, x_bf16, gate_up, rows,
                                                                                  padded_rows, k, ue8m0, out, scales);
  check_launch("quantize_fp8_rows");
}

}  // namespace moeserve::cuda
