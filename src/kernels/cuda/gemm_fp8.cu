// CUDA op: W8A8 FP8 GEMM on Hopper's FP8 tensor cores through cuBLASLt, for prefill-sized
// products with block-scaled FP8 weights (DeepSeek-V3's, Qwen3-FP8's, --quantization fp8's).
// The activations are quantized per row per 128 columns (quantize_fp8_rows) and carry cuBLASLt's
// VEC128_32F scales (one float per 128 consecutive K values of a row, each K block's scales of
// all rows together). The weights' scales, stored per row [N, K / 128], go in as 128 × 128 block
// scales (BLK128x128_32F: [N / 128, K / 128 rounded up to 4], the checkpoint's grid) where every
// aligned block of 128 rows shares them (Fp8Scales::row_blocks; the grid layout checked by
// Fp8TensorCoreGemmMatchesTheQuantizedProduct on an H200), else transposed into VEC128_32F's
// layout. A probe on an H200 (Mixtral's qkv, expert gate/up and down at prefill sizes): 1190-1280
// TFLOP/s with block scales, 790-1030 per row, bf16 cuBLAS 770-800.
//
// The activations' scale rows are kept a multiple of 4 floats (16-byte aligned, which cuBLASLt's
// block-scaled kernels are reported to need): a product of M rows runs as the first M & ~3 rows,
// then the last 1-3 rows padded to 4 into a small buffer, unless the caller's output has room for
// the padded rows (out_spare_rows): then one product of the padded rows writes the spare rows with
// the zero rows' products. Grouped experts take that path (each expert's spare rows are the next
// one's, rewritten after it), which saves a product over all the weights for 3 in 4 experts.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <mutex>

#include "kernels/cuda/common.cuh"

namespace moeserve::cuda {

namespace {

constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;
constexpr int kRowAlign = kLinearFp8SpareRows + 1;  // cuBLASLt's activation scale rows: 16-byte aligned

int padded_rows(int m) { return (m + kRowAlign - 1) / kRowAlign * kRowAlign; }

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

int padded_blocks(int k) { return (k / kFp8Group + 3) / 4 * 4; }
// Room for either layout of the weights' scales.
size_t weight_scale_floats(int n, int k) {
  return std::max<size_t>(size_t(n) * (k / kFp8Group), size_t(n / 128) * padded_blocks(k));
}

// The cuBLASLt handle of the current GPU, made on first use; one per GPU of the process (ranks on
// threads share it), for any stream. (A cuBLAS handle cast to one corrupted the host heap.)
cublasLtHandle_t lt_handle() {
  static std::mutex mutex;
  static std::array<cublasLtHandle_t, 64> handles{};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= static_cast<int>(handles.size())) {
    std::fprintf(stderr, "moeserve: linear_fp8: no current CUDA device\n");
    std::abort();
  }
  const std::lock_guard lock(mutex);
  if (handles[device] == nullptr && cublasLtCreate(&handles[device]) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "moeserve: cublasLtCreate failed\n");
    std::abort();
  }
  return handles[device];
}

// The weights' scales [N, K / 128] (one row per weight row) in the layout cuBLASLt takes.
// row_blocks: grid [N / 128, padded] ← row 128 · b's scales (padded = K / 128 rounded up to 4; the
// padding 1). Otherwise scales_t [K / 128, N] ← the transpose.
__global__ void weight_scales_kernel(const float* scales, int n, int blocks, bool row_blocks, int padded, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (row_blocks) {
    if (i >= static_cast<int64_t>(n / 128) * padded) return;
    const int64_t row_block = i / padded;
    const int block = static_cast<int>(i % padded);
    out[i] = block < blocks ? scales[row_block * 128 * blocks + block] : 1.0f;
    return;
  }
  if (i >= static_cast<int64_t>(n) * blocks) return;
  const int row = static_cast<int>(i / blocks);
  const int block = static_cast<int>(i % blocks);
  out[static_cast<int64_t>(block) * n + row] = scales[i];
}

template <typename T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value));
}

// Row-major out [m, n] = (x_q · x_scales) [m, k] · ((w · w_scales) [n, k])ᵀ, m % 4 == 0: as
// column-major outᵀ [n, m] = Wᵀᵀ · xᵀ. False (nothing queued) when cuBLASLt has no kernel for it.
bool lt_matmul(const GpuExec& exec, const uint8_t* x_q, const float* x_scales, const uint8_t* w, const float* w_scales,
               bool row_blocks, int m, int n, int k, void* out, bool out_f32, void* workspace) {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  bool ran = false;
  const cudaDataType_t out_type = out_f32 ? CUDA_R_32F : CUDA_R_16BF;
  if (cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, k, n, k) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, k, m, k) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&d, out_type, n, m, n) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceCreate(&preference) == CUBLAS_STATUS_SUCCESS) {
    set(desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set(desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    const int32_t vec = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const int32_t blocks = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    set(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, row_blocks ? blocks : vec);
    set(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, vec);
    set(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, w_scales);
    set(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, x_scales);
    const size_t workspace_bytes = kLtWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                         sizeof(workspace_bytes));
    const cublasLtHandle_t handle = lt_handle();
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, d, d, preference, 1, &heuristic, &found) ==
            CUBLAS_STATUS_SUCCESS &&
        found > 0) {
      const float alpha = 1.0f, beta = 0.0f;
      const cublasStatus_t status = cublasLtMatmul(handle, desc, &alpha, w, a, x_q, b, &beta, out, d, out, d,
                                                   &heuristic.algo, workspace, kLtWorkspaceBytes, stream_of(exec));
      if (status != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "moeserve: cublasLtMatmul FP8 (m=%d n=%d k=%d) failed: %d\n", m, n, k,
                     static_cast<int>(status));
        std::abort();
      }
      ran = true;
    }
  }
  if (preference != nullptr) cublasLtMatmulPreferenceDestroy(preference);
  if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
  if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
  if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
  if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  return ran;
}

struct Carved {
  uint8_t* x_q;        // [m rounded up to 4, k] e4m3
  float* x_scales;     // [k / 128, m & ~3] then [k / 128, 4] for the tail
  float* w_scales;     // [k / 128, n], or the block grid [n / 128, k / 128 rounded up to 4]
  void* tail_out;      // [4, n] float32 or bf16
  void* lt_workspace;  // kLtWorkspaceBytes
};

Carved carve(void* workspace, int m, int n, int k) {
  const int64_t padded = padded_rows(m);
  const int64_t blocks = k / kFp8Group;
  auto* base = static_cast<char*>(workspace);
  Carved c{};
  c.x_q = reinterpret_cast<uint8_t*>(base);
  base += align256(padded * k);
  c.x_scales = reinterpret_cast<float*>(base);
  base += align256((blocks * padded + blocks * kRowAlign) * sizeof(float));
  c.w_scales = reinterpret_cast<float*>(base);
  base += align256(weight_scale_floats(n, k) * sizeof(float));
  c.tail_out = base;
  base += align256(size_t{kRowAlign} * n * sizeof(float));
  c.lt_workspace = base;
  return c;
}

}  // namespace

bool linear_fp8_supported(int n, int k, const ops::Fp8Scales& w) {
  return w.block == kFp8Group && w.offset == 0 && k % kFp8Group == 0 && n % 16 == 0;
}

size_t linear_fp8_workspace_bytes(int m, int n, int k) {
  const int64_t padded = padded_rows(m);
  const int64_t blocks = k / kFp8Group;
  return align256(padded * k) + align256((blocks * padded + blocks * kRowAlign) * sizeof(float)) +
         align256(weight_scale_floats(n, k) * sizeof(float)) + align256(size_t{kRowAlign} * n * sizeof(float)) +
         kLtWorkspaceBytes;
}

bool linear_fp8(const GpuExec& exec, const float* x_f32, const uint16_t* x_bf16, int m, const uint8_t* w,
                const ops::Fp8Scales& w_scales, int n, int k, float* out_f32, uint16_t* out_bf16, void* workspace,
                int out_spare_rows, bool x_gate_up) {
  if (!linear_fp8_supported(n, k, w_scales) || (out_f32 == nullptr) == (out_bf16 == nullptr) ||
      (x_gate_up && x_bf16 == nullptr)) {
    std::fprintf(stderr,
                 "moeserve: linear_fp8 needs 128-column weight scale blocks at offset 0, K %% 128 == 0 and "
                 "N %% 16 == 0 (n=%d k=%d), one output, and bf16 input for a gate/up input\n",
                 n, k);
    std::abort();
  }
  if (m == 0) return true;
  const Carved c = carve(workspace, m, n, k);
  const int blocks = k / kFp8Group;
  const bool row_blocks = w_scales.row_blocks && n % 128 == 0;
  const int64_t count = row_blocks ? int64_t(n / 128) * padded_blocks(k) : int64_t(n) * blocks;
  weight_scales_kernel<<<static_cast<unsigned>((count + 255) / 256), 256, 0, stream_of(exec)>>>(
      w_scales.scale, n, blocks, row_blocks, padded_blocks(k), c.w_scales);
  check_launch("weight_scales");
  const bool f32 = out_f32 != nullptr;
  const size_t elt = f32 ? sizeof(float) : sizeof(uint16_t);
  auto* out = f32 ? static_cast<void*>(out_f32) : static_cast<void*>(out_bf16);
  const int padded = padded_rows(m);
  const bool room = m + out_spare_rows >= padded;
  const int head = room ? m : m / kRowAlign * kRowAlign;  // rows quantized into x_q
  const int head_padded = room ? padded : head;           // rows of the first product
  const int tail = m - head;
  if (head > 0) {
    quantize_fp8_rows(exec, x_f32, x_bf16, head, head_padded, k, w_scales.ue8m0, c.x_q, c.x_scales, x_gate_up);
    if (!lt_matmul(exec, c.x_q, c.x_scales, w, c.w_scales, row_blocks, head_padded, n, k, out, f32, c.lt_workspace)) {
      return false;
    }
  }
  if (tail > 0) {
    const int64_t at = static_cast<int64_t>(head) * k;
    const int64_t x_at = x_gate_up ? 2 * at : at;
    uint8_t* tail_q = c.x_q + at;
    float* tail_scales = c.x_scales + static_cast<int64_t>(blocks) * head;
    quantize_fp8_rows(exec, x_f32 != nullptr ? x_f32 + at : nullptr, x_bf16 != nullptr ? x_bf16 + x_at : nullptr, tail,
                      kRowAlign, k, w_scales.ue8m0, tail_q, tail_scales, x_gate_up);
    if (!lt_matmul(exec, tail_q, tail_scales, w, c.w_scales, row_blocks, kRowAlign, n, k, c.tail_out, f32,
                   c.lt_workspace)) {
      return false;
    }
    const cudaError_t status = cudaMemcpyAsync(static_cast<char*>(out) + static_cast<size_t>(head) * n * elt,
                                               c.tail_out, static_cast<size_t>(tail) * n * elt,
                                               cudaMemcpyDeviceToDevice, stream_of(exec));
    if (status != cudaSuccess) {
      std::fprintf(stderr, "moeserve: linear_fp8 tail copy failed: %s\n", cudaGetErrorString(status));
      std::abort();
    }
  }
  return true;
}

}  // namespace moeserve::cuda
