// CUDA op: SwiGLU's elementwise part (ops::silu_mul, either GluParams form) on a fused [gate | up]
// row of float32 or bf16 (a bf16 GEMM's output), to float32 or bf16 (the next GEMM's input).
#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(uint16_t bf16) { return bf16_bits_to_float(bf16); }

// Grid (column blocks, row stride): thread x of a block takes column blockIdx.x · blockDim.x + x
// of rows blockIdx.y, + gridDim.y, ...
template <typename In>
__global__ void silu_mul_kernel(const In* gate_up, int rows, int intermediate, float* out_f32, uint16_t* out_bf16,
                                ops::GluParams params) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= intermediate) return;
  for (int row = blockIdx.y; row < rows; row += gridDim.y) {
    const In* in = gate_up + static_cast<int64_t>(row) * 2 * intermediate;
    const float g = to_float(in[col]);
    const float u = to_float(in[intermediate + col]);
    const float value = glu(g, u, params);
    const int64_t at = static_cast<int64_t>(row) * intermediate + col;
    if (out_f32 != nullptr) out_f32[at] = value;
    if (out_bf16 != nullptr) out_bf16[at] = float_to_bf16_bits(value);
  }
}

template <typename In>
void launch(const GpuExec& exec, const In* gate_up, int rows, int intermediate, float* out_f32, uint16_t* out_bf16,
            const ops::GluParams& params) {
  if (rows == 0 || intermediate == 0) return;
  const dim3 grid(ceil_div(intermediate, 256), std::min(rows, 65535));
  silu_mul_kernel<<<grid, 256, 0, stream_of(exec)>>>(gate_up, rows, intermediate, out_f32, out_bf16, params);
  check_launch("silu_mul");
}

}  // namespace

void silu_mul(const GpuExec& exec, const float* gate_up, int rows, int intermediate, float* out_f32,
              uint16_t* out_bf16, const ops::GluParams& glu) {
  launch(exec, gate_up, rows, intermediate, out_f32, out_bf16, glu);
}

void silu_mul(const GpuExec& exec, const uint16_t* gate_up_bf16, int rows, int intermediate, uint16_t* out_bf16,
              const ops::GluParams& glu) {
  launch(exec, gate_up_bf16, rows, intermediate, nullptr, out_bf16, glu);
}

}  // namespace moeserve::cuda
