// CUDA op: SwiGLU's elementwise part (ops::silu_mul) on a fused [gate | up] row, to float32 or
// bf16 (the next GEMM's input).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__global__ void silu_mul_kernel(const float* gate_up, int64_t count, int intermediate, float* out_f32,
                                uint16_t* out_bf16) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / intermediate;
    const int64_t col = i % intermediate;
    const float g = gate_up[row * 2 * intermediate + col];
    const float u = gate_up[row * 2 * intermediate + intermediate + col];
    const float value = g / (1.0f + expf(-g)) * u;
    if (out_f32 != nullptr) out_f32[i] = value;
    if (out_bf16 != nullptr) out_bf16[i] = float_to_bf16_bits(value);
  }
}

}  // namespace

void silu_mul(const GpuExec& exec, const float* gate_up, int rows, int intermediate, float* out_f32,
              uint16_t* out_bf16) {
  const int64_t count = static_cast<int64_t>(rows) * intermediate;
  if (count == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 65536));
  silu_mul_kernel<<<blocks, 256, 0, stream_of(exec)>>>(gate_up, count, intermediate, out_f32, out_bf16);
  check_launch("silu_mul");
}

}  // namespace moeserve::cuda
