// The CUDA GEMMs against ops::linear: the decode-sized kernels (small_gemm, mma_gemm, split K,
// grouped experts, unsummed partial sums, gathered rows) with bf16, MXFP4 and FP8 weights, FP8's
// bf16 dequantization, activation quantization and W8A8 tensor-core GEMMs (linear_fp8), cuBLAS
// (bf16 inputs, split activations, bf16 output), then SwiGLU's elementwise part and the bf16
// casts. Fresh random inputs per case and NaN-poisoned outputs, as in cuda_ops_test.
#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "cuda_ops_support.h"

namespace moeserve {
namespace {

using testing::CudaOpsTest;
using testing::f32_view;
using testing::relative_error;
using testing::view;

// The decode-sized GEMM kernels share one contract (GemmArgs): small_gemm on CUDA cores,
// mma_gemm on tensor cores with split activations (float32-like) or plain bf16 activations
// (given bf16-exact inputs, so the float32 reference holds for it too).
struct GemmKernel {
  const char* name;
  bool bf16_inputs;  // round x to bf16 before the reference sees it
  bool needs_k8;     // K % 8 == 0 only
  double tolerance;
  // Non-null: the kernel gets a (NaN-poisoned) workspace of this many floats, so GEMMs with few
  // blocks split K.
  size_t (*workspace_floats)(const cuda::GemmArgs&);
  void (*run)(const cuda::GpuExec&, const cuda::GemmArgs&, float* workspace);
};
const GemmKernel kGemmKernels[] = {
    {"small_gemm", false, false, 2e-6, nullptr,
     [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float*) { cuda::small_gemm(exec, args); }},
    {"small_gemm split-K", false, false, 2e-6, cuda::small_gemm_workspace_floats,
     [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float* workspace) {
       cuda::small_gemm(exec, args, workspace);
     }},
    {"mma_gemm split", false, true, 2e-5, nullptr,
     [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float*) { cuda::mma_gemm(exec, args, true); }},
    {"mma_gemm split split-K", false, true, 2e-5, cuda::mma_gemm_workspace_floats,
     [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float* workspace) {
       cuda::mma_gemm(exec, args, true, workspace);
     }},
    {"mma_gemm bf16 split-K", true, true, 1e-5, cuda::mma_gemm_workspace_floats,
     [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float* workspace) {
       cuda::mma_gemm(exec, args, false, workspace);
     }},
};

// A grouped GEMM's offsets [groups + 1]: group g's rows are [offsets[g], offsets[g + 1]).
std::vector<int32_t> group_offsets(const std::vector<int>& counts) {
  std::vector<int32_t> offsets = {0};
  for (int c : counts) offsets.push_back(offsets.back() + c);
  return offsets;
}

void round_to_bf16(std::vector<float>& x) {
  for (float& v : x) v = bf16_to_f32(f32_to_bf16(v));
}

// out against expected = x · wᵀ + bias: the relative error of the whole output below `tolerance`
// once it has enough elements for that norm to mean something, and every element within
// tolerance × Σ_k |x w| + |bias| (a dot product's forward-error bound, which stays meaningful
// when one output is the small difference of large terms: a single-output relative error was
// measured at 3.1e-5 for mma_gemm split once in five runs, on a case with few outputs).
void expect_close_to_linear(const std::vector<float>& out, const std::vector<float>& expected,
                            const std::vector<float>& x, const std::vector<uint16_t>& weight,
                            const std::vector<uint16_t>& bias, int rows, int k, int n, double tolerance,
                            const std::string& label) {
  if (out.size() >= 32) {
    EXPECT_LT(relative_error(out, expected), tolerance) << label;
  }
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      double magnitude = std::fabs(bf16_to_f32(bias[j]));
      for (int i = 0; i < k; ++i)
        magnitude += std::fabs(double(x[size_t(r) * k + i]) * bf16_to_f32(weight[size_t(j) * k + i]));
      const size_t at = size_t(r) * n + j;
      ASSERT_LE(std::fabs(double(out[at]) - expected[at]), tolerance * magnitude) << label << " at " << r << "," << j;
    }
  }
}

TEST_F(CudaOpsTest, DecodeGemmsMatchLinear) {
  for (const GemmKernel& kernel : kGemmKernels) {
    for (int rows : {1, 2, 3, 8, 13, 16, 17, 100, 1000}) {
      for (auto [k, n] : {std::pair{64, 1}, {67, 5}, {72, 5}, {600, 130}, {1029, 37}, {1032, 37}, {4096, 96}}) {
        if (kernel.needs_k8 && !cuda::mma_gemm_supported(k)) continue;
        auto x = random_floats(size_t(rows) * k);
        if (kernel.bf16_inputs) round_to_bf16(x);
        auto weight = random_bf16(size_t(n) * k, 0.1f);
        auto bias = random_bf16(n, 0.5f);
        std::vector<float> expected(size_t(rows) * n);
        ops::linear(cpu_, f32_view(x, Shape{rows, k}), view(weight.data(), DType::kBF16, Shape{n, k}),
                    view(bias.data(), DType::kBF16, Shape{n}), f32_view(expected, Shape{rows, n}));
        float* out = poisoned<float>(expected.size());
        const cuda::GemmArgs args{
            .x = upload(x), .rows = rows, .k = k, .n = n, .weight = upload(weight), .bias = upload(bias), .out = out};
        kernel.run(exec_, args, kernel.workspace_floats ? poisoned<float>(kernel.workspace_floats(args)) : nullptr);
        expect_close_to_linear(download(out, expected.size()), expected, x, weight, bias, rows, k, n, kernel.tolerance,
                               std::string(kernel.name) + " " + std::to_string(rows) + "x" + std::to_string(k) + "x" +
                                   std::to_string(n));
      }
    }
  }
}

// Grouped experts: group g's rows through expert g — gate/up with SwiGLU, or one projection
// (the down GEMM, widths not a multiple of the 32 features a warp takes) — empty groups
// included, groups larger than one tile (mma_gemm: 16 rows, or 32 when the groups average 16
// rows or more, as in the first and fourth sets: 150 takes five).
TEST_F(CudaOpsTest, DecodeGemmsGrouped) {
  for (const GemmKernel& kernel : kGemmKernels) {
    for (bool swiglu : {true, false}) {
      for (auto [hidden, inter] : {std::pair{64, 32}, {67, 45}, {512, 300}, {4096, 200}}) {
        if (kernel.needs_k8 && !cuda::mma_gemm_supported(hidden)) continue;
        // The second set is a decode step's: fewer rows (2) than groups, so small_gemm launches
        // blocks for 2 groups and each finds its group among those with rows. The third is a
        // batch-32 step's (a group of 32 rows: two full 16-row tiles of mma_gemm). The fourth is a
        // batch-64 step's (32-row tiles, one full, one a row past it).
        for (const std::vector<int>& counts :
             {std::vector<int>{3, 0, 1, 40, 0, 17, 2, 0, 150}, std::vector<int>{0, 0, 3, 0, 0, 0, 0, 5, 0},
              std::vector<int>{20, 0, 32, 7, 0, 12, 1}, std::vector<int>{33, 0, 32, 16, 1, 31}}) {
          const int groups = static_cast<int>(counts.size());
          const std::vector<int32_t> offsets = group_offsets(counts);
          const int total = offsets.back();
          auto x = random_floats(size_t(total) * hidden);
          if (kernel.bf16_inputs) round_to_bf16(x);
          const int64_t per_group = (swiglu ? 2LL : 1LL) * inter * hidden;
          auto weight = random_bf16(size_t(groups) * per_group, 0.1f);
          std::vector<float> expected(size_t(total) * inter);
          for (int g = 0; g < groups; ++g) {
            if (counts[g] == 0) continue;
            const TensorView xg = view(x.data() + size_t(offsets[g]) * hidden, DType::kF32, Shape{counts[g], hidden});
            uint16_t* wg = weight.data() + size_t(g) * per_group;
            const TensorView out_g =
                view(expected.data() + size_t(offsets[g]) * inter, DType::kF32, Shape{counts[g], inter});
            if (!swiglu) {
              ops::linear(cpu_, xg, view(wg, DType::kBF16, Shape{inter, hidden}), TensorView{}, out_g);
              continue;
            }
            std::vector<float> gate(size_t(counts[g]) * inter), up(gate.size());
            ops::linear(cpu_, xg, view(wg, DType::kBF16, Shape{inter, hidden}), TensorView{},
                        f32_view(gate, Shape{counts[g], inter}));
            ops::linear(cpu_, xg, view(wg + size_t(inter) * hidden, DType::kBF16, Shape{inter, hidden}), TensorView{},
                        f32_view(up, Shape{counts[g], inter}));
            ops::silu_mul(cpu_, f32_view(gate, Shape{counts[g], inter}), f32_view(up, Shape{counts[g], inter}), out_g);
          }
          float* out = poisoned<float>(expected.size());
          const cuda::GemmArgs args{.x = upload(x),
                                    .rows = *std::max_element(counts.begin(), counts.end()),
                                    .k = hidden,
                                    .n = inter,
                                    .weight = upload(weight),
                                    .group_stride = per_group,
                                    .offsets = upload(offsets),
                                    .groups = groups,
                                    .total_rows = total,
                                    .swiglu = swiglu,
                                    .out = out};
          kernel.run(exec_, args, kernel.workspace_floats ? poisoned<float>(kernel.workspace_floats(args)) : nullptr);
          EXPECT_LT(relative_error(download(out, expected.size()), expected), kernel.tolerance)
              << kernel.name << (swiglu ? " swiglu " : " ") << hidden << "x" << inter << " rows " << total;
        }
      }
    }
  }
}

// GPT-OSS's experts: float32 biases per group (gate/up biases stacked as the weights are) and
// the clamped SwiGLU (a limit low enough to clamp many values), grouped and ungrouped (the
// router's bias: small_gemm's narrow kernel), against the CPU step op; then the unsummed
// split-K partial sums of a biased down projection, added up, give the same (the bias once).
TEST_F(CudaOpsTest, GemmsWithFloat32BiasesAndClampedSwiglu) {
  const ops::GluParams clamped{.clamped = true, .alpha = 1.702f, .limit = 1.5f};
  for (const GemmKernel& kernel : kGemmKernels) {
    for (bool swiglu : {true, false}) {
      for (auto [hidden, inter] : {std::pair{96, 64}, {512, 300}}) {
        for (const std::vector<int>& counts :
             {std::vector<int>{3, 0, 1, 40, 0, 17}, std::vector<int>{0, 2, 0, 1}, std::vector<int>{}}) {
          if (kernel.needs_k8 && !cuda::mma_gemm_supported(hidden)) continue;
          const bool grouped = !counts.empty();
          const int groups = grouped ? static_cast<int>(counts.size()) : 1;
          const std::vector<int32_t> offsets = group_offsets(counts);
          const int total = grouped ? offsets.back() : 3;
          const int rows = grouped ? *std::max_element(counts.begin(), counts.end()) : total;
          const int n_weight = swiglu ? 2 * inter : inter;
          auto x = random_floats(size_t(total) * hidden);
          if (kernel.bf16_inputs) round_to_bf16(x);
          auto weight = random_bf16(size_t(groups) * n_weight * hidden, 0.1f);
          auto bias = random_floats(size_t(groups) * n_weight, 0.5f);
          std::vector<float> expected(size_t(total) * inter);
          ops::GemmArgs args{.x = x.data(),
                             .rows = rows,
                             .k = hidden,
                             .n = inter,
                             .weight = weight.data(),
                             .group_stride = int64_t(n_weight) * hidden,
                             .offsets = grouped ? offsets.data() : nullptr,
                             .groups = groups,
                             .total_rows = total,
                             .bias_f32 = bias.data(),
                             .bias_group_stride = n_weight,
                             .swiglu = swiglu,
                             .glu = clamped,
                             .out = expected.data()};
          ops::gemm(cpu_, args);
          cuda::GemmArgs device = args;
          device.x = upload(x);
          device.weight = upload(weight);
          device.offsets = grouped ? upload(offsets) : nullptr;
          device.bias_f32 = upload(bias);
          device.out = poisoned<float>(expected.size());
          kernel.run(exec_, device,
                     kernel.workspace_floats ? poisoned<float>(kernel.workspace_floats(device)) : nullptr);
          EXPECT_LT(relative_error(download(device.out, expected.size()), expected), kernel.tolerance)
              << kernel.name << (swiglu ? " swiglu " : " ") << hidden << "x" << inter << " rows " << total;
        }
      }
    }
  }
  // A down projection of 2 tokens × top-2 over 4 experts with a bias per expert, split K ways.
  const int hidden = 1024, inter = 8192, experts = 4, entries = 4;
  const std::vector<int32_t> offsets = {0, 1, 2, 2, 4};
  auto act = random_floats(size_t(entries) * inter);
  auto weight = random_bf16(size_t(experts) * hidden * inter, 0.1f);
  auto bias = random_floats(size_t(experts) * hidden, 0.5f);
  std::vector<float> expected(size_t(entries) * hidden);
  ops::GemmArgs args{.x = act.data(),
                     .rows = 2,
                     .k = inter,
                     .n = hidden,
                     .weight = weight.data(),
                     .group_stride = int64_t(hidden) * inter,
                     .offsets = offsets.data(),
                     .groups = experts,
                     .total_rows = entries,
                     .bias_f32 = bias.data(),
                     .bias_group_stride = hidden,
                     .out = expected.data()};
  ops::gemm(cpu_, args);
  cuda::GemmArgs device = args;
  device.x = upload(act);
  device.weight = upload(weight);
  device.offsets = upload(offsets);
  device.bias_f32 = upload(bias);
  device.out = poisoned<float>(expected.size());
  const cuda::SplitSums sums =
      cuda::small_gemm_unsummed(exec_, device, poisoned<float>(cuda::small_gemm_workspace_floats(device)));
  ASSERT_GT(sums.splits, 1);
  const std::vector<float> slices = download(const_cast<float*>(sums.data), size_t(sums.splits) * sums.split_stride);
  std::vector<float> added(expected.size(), 0.0f);
  for (int s = 0; s < sums.splits; ++s)
    for (size_t i = 0; i < added.size(); ++i) added[i] += slices[size_t(s) * sums.split_stride + i];
  EXPECT_LT(relative_error(added, expected), 2e-6);
}

// GPT-OSS's experts as published, MXFP4 (random codes, scales 2^-9 .. 2^-1, and 2^-2 .. 2^6
// for mma_gemm's two-step scaling), streamed by every decode GEMM kernel at decode and prefill row
// counts (small_gemm's tiles of 1 to 16 rows, mma_gemm's 8-, 16- and 32-row tiles, groups past
// one tile), against the CPU step op (which dequantizes exactly).
TEST_F(CudaOpsTest, DecodeGemmsStreamMxfp4Experts) {
  const ops::GluParams clamped{.clamped = true, .alpha = 1.702f, .limit = 7.0f};
  for (bool swiglu : {true, false}) {
    for (auto [hidden, inter, max_e8m0] : {std::tuple{96, 64, 126}, {2880, 2880, 126}, {160, 96, 133}}) {
      for (const std::vector<int>& counts : {std::vector<int>{1, 0, 0, 0}, std::vector<int>{0, 2, 0, 1},
                                             std::vector<int>{3, 0, 1, 40, 0, 17}, std::vector<int>{64, 33, 0, 100}}) {
        const int groups = static_cast<int>(counts.size());
        const std::vector<int32_t> offsets = group_offsets(counts);
        const int total = offsets.back();
        const int n_weight = swiglu ? 2 * inter : inter;
        const int64_t per_group = int64_t(n_weight) * hidden;
        std::vector<uint8_t> blocks(size_t(groups * per_group / 2)), scales(size_t(groups * per_group / 32));
        for (uint8_t& b : blocks) b = static_cast<uint8_t>(random_int(0, 255));
        for (uint8_t& e : scales) e = static_cast<uint8_t>(random_int(max_e8m0 - 8, max_e8m0));
        // x scaled by the inverse of the larger scales (a power of two), so every case's outputs
        // have the same magnitude against the clamped SwiGLU's limits
        auto x = random_floats(size_t(total) * hidden, std::ldexp(1.0f, 126 - max_e8m0));
        auto bias = random_floats(size_t(groups) * n_weight, 0.5f);
        for (const GemmKernel& kernel : kGemmKernels) {
          std::vector<float> x_used = x;
          if (kernel.bf16_inputs) round_to_bf16(x_used);
          std::vector<float> expected(size_t(total) * inter);
          ops::GemmArgs args{.x = x_used.data(),
                             .rows = *std::max_element(counts.begin(), counts.end()),
                             .k = hidden,
                             .n = inter,
                             .group_stride = per_group,
                             .offsets = offsets.data(),
                             .groups = groups,
                             .total_rows = total,
                             .bias_f32 = bias.data(),
                             .bias_group_stride = n_weight,
                             .swiglu = swiglu,
                             .glu = clamped,
                             .out = expected.data(),
                             .weight_mxfp4 = blocks.data(),
                             .mx_scale = scales.data()};
          ops::gemm(cpu_, args);
          cuda::GemmArgs device = args;
          device.x = upload(x_used);
          device.offsets = upload(offsets);
          device.bias_f32 = upload(bias);
          device.weight_mxfp4 = upload(blocks);
          device.mx_scale = upload(scales);
          device.out = poisoned<float>(expected.size());
          kernel.run(exec_, device,
                     kernel.workspace_floats ? poisoned<float>(kernel.workspace_floats(device)) : nullptr);
          EXPECT_LT(relative_error(download(device.out, expected.size()), expected), kernel.tolerance)
              << kernel.name << (swiglu ? " swiglu " : " ") << hidden << "x" << inter << " rows " << total
              << " e8m0 up to " << max_e8m0;
        }
      }
    }
  }
}

// Random e4m3 codes (never e4m3fn's NaN).
std::vector<uint8_t> random_fp8_codes(size_t count, std::mt19937& rng) {
  std::vector<uint8_t> codes(count);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& c : codes) {
    c = static_cast<uint8_t>(byte(rng));
    if ((c & 0x7f) == 0x7f) c ^= 1;
  }
  return codes;
}

// One FP8 weight case through `kernel` against the CPU step op (which dequantizes exactly): random
// codes but NaN, positive scales near 0.005 per 128-wide K block of a row (at block offset
// `offset`), a bias; counts[g] rows for group g (one count: ungrouped). row_scale[r % size]
// multiplies x's row r, and each row's outputs are checked on their own (relative error).
// quantize: W8A8 (fp8.quantize_activations, with ue8m0 scales or not), which the CPU emulates.
class CudaFp8GemmTest : public CudaOpsTest {
 protected:
  void expect_matches_the_cpu(const GemmKernel& kernel, bool swiglu, int hidden, int inter, int offset,
                              const std::vector<int>& counts, const std::vector<float>& row_scale = {1.0f},
                              bool quantize = false, bool ue8m0 = false) {
    constexpr int kBlock = 128;
    const bool dense = counts.size() == 1;
    const int groups = static_cast<int>(counts.size());
    const std::vector<int32_t> offsets = group_offsets(counts);
    const int total = offsets.back();
    const int n_weight = swiglu ? 2 * inter : inter;
    const int64_t per_group = int64_t(n_weight) * hidden;
    const int scale_cols = (offset + hidden + kBlock - 1) / kBlock;
    const std::vector<uint8_t> codes = random_fp8_codes(size_t(groups * per_group), rng_);
    std::vector<float> scales = random_floats(size_t(groups) * n_weight * scale_cols);
    for (float& v : scales) v = 0.002f + 0.004f * std::fabs(v);
    auto x = random_floats(size_t(total) * hidden);
    for (int r = 0; r < total; ++r)
      for (int k = 0; k < hidden; ++k) x[size_t(r) * hidden + k] *= row_scale[r % row_scale.size()];
    if (kernel.bf16_inputs) round_to_bf16(x);
    auto bias = random_floats(size_t(groups) * n_weight, 0.5f);
    std::vector<float> expected(size_t(total) * inter);
    ops::GemmArgs args{.x = x.data(),
                       .rows = *std::max_element(counts.begin(), counts.end()),
                       .k = hidden,
                       .n = inter,
                       .group_stride = dense ? 0 : per_group,
                       .offsets = dense ? nullptr : offsets.data(),
                       .groups = groups,
                       .total_rows = dense ? 0 : total,
                       .bias_f32 = bias.data(),
                       .bias_group_stride = n_weight,
                       .swiglu = swiglu,
                       .out = expected.data(),
                       .weight_fp8 = codes.data(),
                       .fp8 = ops::Fp8Scales{.scale = scales.data(),
                                             .block = kBlock,
                                             .offset = offset,
                                             .quantize_activations = quantize,
                                             .ue8m0 = ue8m0},
                       .scale_group_stride = int64_t(n_weight) * scale_cols};
    ops::gemm(cpu_, args);
    cuda::GemmArgs device = args;
    device.x = upload(x);
    device.offsets = dense ? nullptr : upload(offsets);
    device.bias_f32 = upload(bias);
    device.weight_fp8 = upload(codes);
    device.fp8.scale = upload(scales);
    device.out = poisoned<float>(expected.size());
    kernel.run(exec_, device, kernel.workspace_floats ? poisoned<float>(kernel.workspace_floats(device)) : nullptr);
    const std::vector<float> out = download(device.out, expected.size());
    const std::string label = std::string(kernel.name) + (swiglu ? " swiglu " : " ") + std::to_string(hidden) + "x" +
                              std::to_string(inter) + " offset " + std::to_string(offset) + " rows " +
                              std::to_string(total) + (dense ? " dense" : "") +
                              (quantize ? (ue8m0 ? " w8a8 ue8m0" : " w8a8") : "");
    if (row_scale.size() == 1) {
      EXPECT_LT(relative_error(out, expected), kernel.tolerance) << label;
      return;
    }
    for (int r = 0; r < total; ++r) {
      const auto row = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + int64_t(r) * inter, v.begin() + int64_t(r + 1) * inter);
      };
      EXPECT_LT(relative_error(row(out), row(expected)), kernel.tolerance)
          << label << ", row " << r << " scaled by " << row_scale[r % row_scale.size()];
    }
  }
};

// Block-scaled FP8 e4m3 weights (DeepSeek-V3's layout, the 128-wide K blocks' scales per row as
// the plan holds them) streamed by every decode GEMM kernel (small_gemm at 1-16 rows; mma_gemm's
// 8-, 16- and 32-row tiles, groups past one tile), grouped with SwiGLU and a bias or without, also
// with a K block offset (a TP shard that starts inside a block: 64, which mma_gemm's 64-K chunks
// still take), with and without split K, and dense (no groups) through mma_gemm; K not a multiple
// of 64 (176 and 48: DeepSeek-V3 fixture widths) leaves some threads' 16-K spans past K while their
// 64-K sub-chunk's scale still applies to them.
TEST_F(CudaFp8GemmTest, DecodeGemmsStreamFp8Weights) {
  for (const GemmKernel& kernel : kGemmKernels) {
    for (bool swiglu : {true, false}) {
      for (auto [hidden, inter, offset] : {std::tuple{256, 128, 0}, {7168, 2048, 0}, {512, 384, 64}, {176, 48, 0}}) {
        for (const std::vector<int>& counts :
             {std::vector<int>{1, 0, 0, 0}, std::vector<int>{0, 2, 0, 1}, std::vector<int>{3, 0, 1, 9, 0, 16},
              std::vector<int>{40, 0, 17, 33}, std::vector<int>{24}}) {
          const bool dense = counts.size() == 1;  // one group: run ungrouped
          const bool mma = kernel.needs_k8;
          if (!mma && *std::max_element(counts.begin(), counts.end()) > 16) continue;  // small_gemm's sizes
          if (dense && (!mma || swiglu)) continue;
          expect_matches_the_cpu(kernel, swiglu, hidden, inter, offset, counts);
        }
      }
    }
  }
}

// FP8 weight streams on rows far from magnitude 1 (3e5, past fp16's 65504; 2e-6, near its
// subnormals) beside rows of 1 in the same tile keep every kernel's accuracy, row by row: an
// implementation that stages activations in a narrower type (fp16 operands were tried) must keep
// each row's range.
TEST_F(CudaFp8GemmTest, Fp8WeightStreamsKeepEachRowsRange) {
  const std::vector<float> row_scale = {3e5f, 2e-6f, 1.0f};
  for (const GemmKernel& kernel : kGemmKernels) {
    for (bool swiglu : {true, false}) {
      for (const std::vector<int>& counts :
           {std::vector<int>{2, 0, 5}, std::vector<int>{17, 9}, std::vector<int>{20}}) {
        const bool mma = kernel.needs_k8;
        if (!mma && *std::max_element(counts.begin(), counts.end()) > 16) continue;
        if (counts.size() == 1 && (!mma || swiglu)) continue;
        expect_matches_the_cpu(kernel, swiglu, 512, 256, 0, counts, row_scale);
      }
    }
  }
}

// W8A8 in mma_gemm (the bf16 mode's FP8 decode GEMMs): each row's 128-K groups of the
// bf16-rounded activations quantized to e4m3 inside the kernel, as ops::quantize_activations_fp8
// does (amax / 448 scales, or powers of two with ue8m0), multiplied on FP8 tensor cores: against
// the CPU's exact product of the same quantized values, within 1e-3 (each 128-K block accumulates
// in the tensor cores' reduced precision), with and without split K, grouped with SwiGLU and a
// bias or without, 8-, 16- and 32-row tiles, dense; rows far from magnitude 1 keep their range.
TEST_F(CudaFp8GemmTest, W8A8DecodeGemmsQuantizeTheirActivations) {
  const GemmKernel kernels[] = {
      {"mma_gemm w8a8", true, true, 1e-3, nullptr,
       [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float*) { cuda::mma_gemm(exec, args, false); }},
      {"mma_gemm w8a8 split-K", true, true, 1e-3, cuda::mma_gemm_workspace_floats,
       [](const cuda::GpuExec& exec, const cuda::GemmArgs& args, float* workspace) {
         cuda::mma_gemm(exec, args, false, workspace);
       }}};
  for (const GemmKernel& kernel : kernels) {
    for (bool swiglu : {true, false}) {
      for (bool ue8m0 : {false, true}) {
        for (auto [hidden, inter] : {std::pair{256, 128}, {7168, 2048}, {512, 384}}) {
          for (const std::vector<int>& counts :
               {std::vector<int>{1, 0, 0, 0}, std::vector<int>{0, 2, 0, 1}, std::vector<int>{3, 0, 1, 9, 0, 16},
                std::vector<int>{40, 0, 17, 33}, std::vector<int>{24}}) {
            if (counts.size() == 1 && swiglu) continue;
            expect_matches_the_cpu(kernel, swiglu, hidden, inter, 0, counts, {1.0f}, true, ue8m0);
          }
        }
        expect_matches_the_cpu(kernel, swiglu, 512, 256, 0, {17, 9}, {3e5f, 2e-6f, 1.0f}, true, ue8m0);
      }
    }
  }
  cuda::GemmArgs misaligned{.k = 176, .fp8 = ops::Fp8Scales{.block = 128, .quantize_activations = true}};
  EXPECT_FALSE(cuda::mma_gemm_supports_fp8(misaligned.k, misaligned.fp8));  // K % 128 != 0: W8A16 instead
  misaligned.k = 512;
  misaligned.fp8.offset = 64;  // a TP shard inside a block
  EXPECT_FALSE(cuda::mma_gemm_supports_fp8(misaligned.k, misaligned.fp8));
}

// Block-scaled FP8 weights → bf16 for cuBLAS (prefill-sized GEMMs): each weight times its row's
// block scale, rounded once to bf16, at a block offset too.
TEST_F(CudaOpsTest, Fp8WeightsDequantizeToBf16) {
  constexpr int kBlock = 128;
  for (auto [rows, cols, offset] : {std::tuple{3, 256, 0}, {130, 384, 64}, {1, 7168, 0}}) {
    const int scale_cols = (offset + cols + kBlock - 1) / kBlock;
    const std::vector<uint8_t> codes = random_fp8_codes(size_t(rows) * cols, rng_);
    std::vector<float> scales = random_floats(size_t(rows) * scale_cols);
    for (float& v : scales) v = 0.002f + 0.004f * std::fabs(v);
    uint16_t* out = poisoned<uint16_t>(codes.size());
    cuda::fp8_to_bf16(exec_, upload(codes), ops::Fp8Scales{.scale = upload(scales), .block = kBlock, .offset = offset},
                      rows, cols, out);
    const std::vector<uint16_t> got = download(out, codes.size());
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const float expected =
            f8e4m3_to_f32(codes[size_t(r) * cols + c]) * scales[size_t(r) * scale_cols + (offset + c) / kBlock];
        ASSERT_EQ(got[size_t(r) * cols + c], f32_to_bf16(expected)) << r << "," << c;
      }
  }
}

// Dynamic FP8 activation quantization on the device keeps of x exactly what the CPU's emulation
// (ops::quantize_activations_fp8) keeps: each code times its scale equals the CPU's value, from
// float32 and from bf16 inputs, with ue8m0 scales too; an all-zero group stays zero; padded rows
// are zero codes at scale 1.
TEST_F(CudaOpsTest, Fp8ActivationQuantizationMatchesTheCpu) {
  constexpr int kGroup = cuda::kFp8Group;
  for (bool ue8m0 : {false, true}) {
    for (bool bf16_in : {false, true}) {
      for (auto [rows, padded, k] : {std::tuple{1, 4, 128}, {5, 8, 384}, {64, 64, 7168}}) {
        std::vector<float> x = random_floats(size_t(rows) * k, 3.0f);
        std::fill(x.end() - kGroup, x.end(), 0.0f);  // the last row's last group
        if (bf16_in) round_to_bf16(x);
        std::vector<uint16_t> x_bf16(x.size());
        for (size_t i = 0; i < x.size(); ++i) x_bf16[i] = f32_to_bf16(x[i]);
        std::vector<float> expected = x;
        ops::quantize_activations_fp8(expected.data(), rows, k, kGroup, ue8m0);
        uint8_t* codes = poisoned<uint8_t>(size_t(padded) * k);
        float* scales = poisoned<float>(size_t(padded) * (k / kGroup));
        cuda::quantize_fp8_rows(exec_, bf16_in ? nullptr : upload(x), bf16_in ? upload(x_bf16) : nullptr, rows, padded,
                                k, ue8m0, codes, scales);
        const std::vector<uint8_t> got_codes = download(codes, size_t(padded) * k);
        const std::vector<float> got_scales = download(scales, size_t(padded) * (k / kGroup));
        const std::string label = std::string(ue8m0 ? "ue8m0 " : "") + (bf16_in ? "bf16 " : "f32 ") +
                                  std::to_string(rows) + "x" + std::to_string(k);
        for (int r = 0; r < padded; ++r) {
          for (int c = 0; c < k; ++c) {
            const float scale = got_scales[size_t(c / kGroup) * padded + r];
            const float value = f8e4m3_to_f32(got_codes[size_t(r) * k + c]) * scale;
            ASSERT_EQ(value, r < rows ? expected[size_t(r) * k + c] : 0.0f) << label << " at " << r << "," << c;
            if (r >= rows) ASSERT_EQ(scale, 1.0f) << label;
            if (ue8m0) ASSERT_EQ(std::exp2(std::round(std::log2(scale))), scale) << label;
          }
        }
      }
    }
  }
}

// The experts' down projection quantizes silu(gate) · up straight from the bf16 gate/up product:
// quantize_fp8_rows' gate_up input gives the codes and scales that silu_mul's bf16 output then
// quantize_fp8_rows gives, bit for bit, and so does linear_fp8 (rows past a multiple of 4 go
// through its padded tail, with and without spare output rows).
TEST_F(CudaOpsTest, Fp8GateUpInputIsSiluMulThenQuantized) {
  constexpr int kGroup = cuda::kFp8Group;
  for (auto [rows, k, n] : {std::tuple{5, 256, 128}, {64, 384, 256}, {301, 1024, 128}}) {
    const std::vector<uint16_t> gate_up = random_bf16(size_t(rows) * 2 * k, 4.0f);  // [rows, 2k]
    const uint16_t* gate_up_d = upload(gate_up);
    uint16_t* act = poisoned<uint16_t>(size_t(rows) * k);  // [rows, k]
    cuda::silu_mul(exec_, gate_up_d, rows, k, act);
    const std::string label = std::to_string(rows) + "x" + std::to_string(k);
    std::vector<std::vector<uint8_t>> codes;
    std::vector<std::vector<float>> scales;
    for (bool fused : {false, true}) {
      uint8_t* q = poisoned<uint8_t>(size_t(rows) * k);
      float* s = poisoned<float>(size_t(rows) * (k / kGroup));
      cuda::quantize_fp8_rows(exec_, nullptr, fused ? gate_up_d : act, rows, rows, k, false, q, s, fused);
      codes.push_back(download(q, size_t(rows) * k));
      scales.push_back(download(s, size_t(rows) * (k / kGroup)));
    }
    ASSERT_EQ(codes[0], codes[1]) << label;
    ASSERT_EQ(scales[0], scales[1]) << label;
    std::vector<float> weight_scales = random_floats(size_t(n) * (k / kGroup));
    for (float& v : weight_scales) v = 0.002f + 0.004f * std::fabs(v);
    const ops::Fp8Scales fp8{.scale = upload(weight_scales), .block = kGroup, .offset = 0};
    const uint8_t* w = upload(random_fp8_codes(size_t(n) * k, rng_));
    for (int spare : {0, cuda::kLinearFp8SpareRows}) {
      std::vector<std::vector<float>> outs;
      for (bool fused : {false, true}) {
        float* out = poisoned<float>(size_t(rows + spare) * n);
        ASSERT_TRUE(cuda::linear_fp8(exec_, nullptr, fused ? gate_up_d : act, rows, w, fp8, n, k, out, nullptr,
                                     poisoned<uint8_t>(cuda::linear_fp8_workspace_bytes(rows, n, k)), spare, fused))
            << label;
        outs.push_back(download(out, size_t(rows) * n));
      }
      ASSERT_EQ(outs[0], outs[1]) << label << " spare " << spare;
    }
  }
}

// W8A8 on FP8 tensor cores (linear_fp8: cuBLASLt) against the CPU in double: x quantized by
// ops::quantize_activations_fp8, times the dequantized weights. Weight scales per row (the layout
// the weight plan stores) that differ from row to row (cuBLASLt's per-row scales), and scales
// shared by each aligned block of 128 rows, different per block (its 128 × 128 block scales,
// K / 128 not always a multiple of 4); row counts that are not a multiple of 4 (the padded tail),
// float32 and bf16 inputs and outputs, and outputs with spare rows (kLinearFp8SpareRows: one
// padded product), past which nothing is written. Each output within 1e-3 of Σ_k |x w| (the FP8
// tensor cores accumulate each 128-K block in reduced precision), bf16 outputs also within their
// rounding.
TEST_F(CudaOpsTest, Fp8TensorCoreGemmMatchesTheQuantizedProduct) {
  constexpr int kBlock = 128;
  for (auto [m, n, k] : {std::tuple{1, 256, 256},
                         {3, 128, 384},
                         {6, 256, 256},
                         {17, 256, 640},
                         {64, 384, 512},
                         {301, 256, 1024},
                         {1000, 2048, 512}}) {
    for (bool row_blocks : {false, true}) {
      for (bool bf16_io : {false, true}) {
        const int scale_cols = k / kBlock;
        const std::vector<uint8_t> codes = random_fp8_codes(size_t(n) * k, rng_);
        std::vector<float> scales = random_floats(size_t(n) * scale_cols);
        for (float& v : scales) v = 0.002f + 0.004f * std::fabs(v);
        if (row_blocks) {  // every row takes the scales of its block's first row
          for (int r = 0; r < n; ++r)
            std::copy_n(scales.begin() + size_t(r / kBlock * kBlock) * scale_cols, scale_cols,
                        scales.begin() + size_t(r) * scale_cols);
        }
        std::vector<float> x = random_floats(size_t(m) * k);
        if (bf16_io) round_to_bf16(x);
        std::vector<uint16_t> x_bf16(x.size());
        for (size_t i = 0; i < x.size(); ++i) x_bf16[i] = f32_to_bf16(x[i]);
        std::vector<float> xq = x;
        ops::quantize_activations_fp8(xq.data(), m, k, kBlock, false);
        std::vector<double> w(size_t(n) * k);  // [n, k] dequantized
        for (size_t i = 0; i < w.size(); ++i)
          w[i] = double(f8e4m3_to_f32(codes[i])) * scales[i / k * scale_cols + i % k / kBlock];
        std::vector<double> expected(size_t(m) * n), bound(size_t(m) * n);  // [m, n]
        for (int r = 0; r < m; ++r) {
          for (int j = 0; j < n; ++j) {
            double sum = 0.0, magnitude = 0.0;
            for (int i = 0; i < k; ++i) {
              const double product = double(xq[size_t(r) * k + i]) * w[size_t(j) * k + i];
              sum += product;
              magnitude += std::fabs(product);
            }
            expected[size_t(r) * n + j] = sum;
            bound[size_t(r) * n + j] = 1e-3 * magnitude + (bf16_io ? std::fabs(sum) / 256 : 0.0);
          }
        }
        const ops::Fp8Scales fp8{.scale = upload(scales), .block = kBlock, .offset = 0, .row_blocks = row_blocks};
        ASSERT_TRUE(cuda::linear_fp8_supported(n, k, fp8));
        const float* x_d = bf16_io ? nullptr : upload(x);
        const uint16_t* x_bf16_d = bf16_io ? upload(x_bf16) : nullptr;
        const uint8_t* codes_d = upload(codes);
        for (int spare : {0, cuda::kLinearFp8SpareRows}) {
          void* workspace = poisoned<uint8_t>(cuda::linear_fp8_workspace_bytes(m, n, k));
          // spare rows, then one more that must stay poisoned
          const size_t out_size = size_t(m + spare + 1) * n;
          float* out_f32 = bf16_io ? nullptr : poisoned<float>(out_size);
          uint16_t* out_bf16 = bf16_io ? poisoned<uint16_t>(out_size) : nullptr;
          const std::string label = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
                                    (row_blocks ? " block scales" : " row scales") + (bf16_io ? " bf16" : " f32") +
                                    " spare " + std::to_string(spare);
          ASSERT_TRUE(
              cuda::linear_fp8(exec_, x_d, x_bf16_d, m, codes_d, fp8, n, k, out_f32, out_bf16, workspace, spare))
              << "cuBLASLt has no kernel for " << label;
          std::vector<float> got(size_t(m) * n);
          if (bf16_io) {
            const std::vector<uint16_t> bits = download(out_bf16, out_size);
            for (size_t i = 0; i < got.size(); ++i) got[i] = bf16_to_f32(bits[i]);
            for (size_t i = got.size() + size_t(spare) * n; i < out_size; ++i)
              ASSERT_EQ(bits[i], 0xffff) << label << " at " << i;
          } else {
            const std::vector<float> all = download(out_f32, out_size);
            std::copy_n(all.begin(), got.size(), got.begin());
            for (size_t i = got.size() + size_t(spare) * n; i < out_size; ++i)
              ASSERT_TRUE(std::isnan(all[i])) << label << " at " << i;
          }
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_LE(std::fabs(got[i] - expected[i]), bound[i]) << label << " at " << i / n << "," << i % n;
        }
      }
    }
  }
}

// small_gemm_unsummed's partial sums added up by their consumers — the residual norm after
// attention (a one-row o projection) and the MoE combine (the experts' down projection at two
// tokens) — give exactly what the summed GEMM followed by the plain consumer gives (the same
// additions in the same order), on shapes that split K 2 and 4 ways; one that splits 5 ways
// (more than kMaxFusedSplits) comes back summed.
TEST_F(CudaOpsTest, UnsummedSplitKMatchesTheSummedGemm) {
  for (auto [k, n, splits] : {std::tuple{4096, 4096, 2}, {8192, 1000, 4}, {14336, 4096, 1}}) {
    auto x = random_floats(size_t(k));
    const cuda::GemmArgs args{
        .x = upload(x), .rows = 1, .k = k, .n = n, .weight = upload(random_bf16(size_t(n) * k, 0.1f))};
    cuda::GemmArgs summed = args;
    summed.out = poisoned<float>(n);
    cuda::small_gemm(exec_, summed, poisoned<float>(cuda::small_gemm_workspace_floats(args)));
    cuda::GemmArgs unsummed = args;
    unsummed.out = poisoned<float>(n);
    const cuda::SplitSums sums =
        cuda::small_gemm_unsummed(exec_, unsummed, poisoned<float>(cuda::small_gemm_workspace_floats(args)));
    ASSERT_EQ(sums.splits, splits) << k << "x" << n;
    if (splits == 1) {
      EXPECT_EQ(sums.data, unsummed.out);
    }
    const auto residual = random_floats(size_t(n), 2.0f);
    const auto weight = upload(random_bf16(size_t(n), 1.0f));
    std::vector<std::vector<float>> normed;
    for (const cuda::SplitSums& add : {cuda::SplitSums{summed.out, 1, 0}, sums}) {
      float* out = poisoned<float>(n);
      cuda::rms_norm(exec_, cuda::RmsNormArgs{.x = upload(residual),
                                              .add = add.data,
                                              .add_splits = add.splits,
                                              .add_split_stride = add.split_stride,
                                              .rows = 1,
                                              .dim = n,
                                              .weight = weight,
                                              .out_f32 = out});
      normed.push_back(download(out, n));
    }
    EXPECT_EQ(normed[1], normed[0]) << k << "x" << n;
  }
  // Grouped: 2 tokens × top-2 over 4 experts (token 0 → experts 1, 3; token 1 → 3, 0), hidden 4096.
  const int hidden = 4096, inter = 8192, experts = 4, top_k = 2, tokens = 2;
  const std::vector<int32_t> offsets = {0, 1, 2, 2, 4};            // permuted rows per expert
  const std::vector<int32_t> positions = {1, 2, 3, 0};             // (token, k) → permuted row
  const auto act = random_floats(size_t(tokens * top_k) * inter);  // [entries, inter] permuted
  const cuda::GemmArgs down{.x = upload(act),
                            .rows = tokens,
                            .k = inter,
                            .n = hidden,
                            .weight = upload(random_bf16(size_t(experts) * hidden * inter, 0.1f)),
                            .group_stride = int64_t(hidden) * inter,
                            .offsets = upload(offsets),
                            .groups = experts,
                            .total_rows = tokens * top_k};
  cuda::GemmArgs summed = down;
  summed.out = poisoned<float>(size_t(tokens * top_k) * hidden);
  cuda::small_gemm(exec_, summed, poisoned<float>(cuda::small_gemm_workspace_floats(down)));
  cuda::GemmArgs unsummed = down;
  unsummed.out = poisoned<float>(size_t(tokens * top_k) * hidden);
  const cuda::SplitSums sums =
      cuda::small_gemm_unsummed(exec_, unsummed, poisoned<float>(cuda::small_gemm_workspace_floats(down)));
  EXPECT_EQ(sums.splits, 2);
  const auto weights = upload(random_floats(size_t(tokens * top_k)));
  const auto residual = random_floats(size_t(tokens) * hidden, 2.0f);
  const auto norm_weight = upload(random_bf16(size_t(hidden), 1.0f));
  std::vector<std::vector<float>> results;
  for (const cuda::SplitSums& experts_out : {cuda::SplitSums{summed.out, 1, 0}, sums}) {
    float* res = upload(residual);
    float* normed = poisoned<float>(size_t(tokens) * hidden);
    cuda::moe_combine(exec_, cuda::MoeCombineArgs{.expert_out = experts_out.data,
                                                  .expert_splits = experts_out.splits,
                                                  .expert_split_stride = experts_out.split_stride,
                                                  .positions = upload(positions),
                                                  .weights = weights,
                                                  .tokens = tokens,
                                                  .top_k = top_k,
                                                  .hidden = hidden,
                                                  .residual = res,
                                                  .norm_weight = norm_weight,
                                                  .normed_f32 = normed});
    std::vector<float> both = download(res, size_t(tokens) * hidden);
    const std::vector<float> n = download(normed, size_t(tokens) * hidden);
    both.insert(both.end(), n.begin(), n.end());
    results.push_back(both);
  }
  EXPECT_EQ(results[1], results[0]);
}

// small_gemm's fused gather (x_rows): the same output as on the gathered rows, grouped (the MoE
// experts at decode sizes: rows repeat, each token goes to top_k experts) and ungrouped (narrow).
TEST_F(CudaOpsTest, SmallGemmGathersItsRows) {
  // args (x, out unset) on x_source's rows x_rows: reading them through x_rows must give exactly
  // what the same GEMM gives on the rows gathered beforehand.
  auto expect_gather_matches = [&](cuda::GemmArgs args, const std::vector<int32_t>& x_rows, int source_rows,
                                   const char* label) {
    const std::vector<float> x_source = random_floats(size_t(source_rows) * args.k);
    std::vector<float> gathered;
    for (int32_t r : x_rows)
      gathered.insert(gathered.end(), x_source.begin() + size_t(r) * args.k, x_source.begin() + size_t(r + 1) * args.k);
    const size_t outputs = x_rows.size() * args.n;
    args.x = upload(gathered);
    args.out = poisoned<float>(outputs);
    cuda::small_gemm(exec_, args);
    const std::vector<float> expected = download(args.out, outputs);
    args.x = upload(x_source);
    args.x_rows = upload(x_rows);
    args.out = poisoned<float>(outputs);
    cuda::small_gemm(exec_, args);
    EXPECT_EQ(download(args.out, outputs), expected) << label;
  };
  for (bool swiglu : {true, false}) {
    const int tokens = 3, hidden = 200, inter = 70, groups = 5;
    const int64_t per_group = (swiglu ? 2LL : 1LL) * inter * hidden;
    // 6 entries = 3 tokens × top-2.
    expect_gather_matches(cuda::GemmArgs{.rows = tokens,
                                         .k = hidden,
                                         .n = inter,
                                         .weight = upload(random_bf16(size_t(groups) * per_group, 0.1f)),
                                         .group_stride = per_group,
                                         .offsets = upload(std::vector<int32_t>{0, 2, 2, 5, 5, 6}),
                                         .groups = groups,
                                         .total_rows = 6,
                                         .swiglu = swiglu},
                          {2, 0, 1, 0, 2, 1}, tokens, swiglu ? "grouped swiglu" : "grouped");
  }
  // Ungrouped with few outputs: the narrow kernel (the router's shape).
  const int hidden = 128, n = 8;
  expect_gather_matches(
      cuda::GemmArgs{.rows = 3, .k = hidden, .n = n, .weight = upload(random_bf16(size_t(n) * hidden, 0.1f))},
      {3, 3, 0}, 4, "narrow");
}

TEST_F(CudaOpsTest, CublasGemmMatchesLinearOnBf16Inputs) {
  for (int rows : {17, 100, 1000}) {
    for (auto [k, n] : {std::pair{64, 33}, {200, 256}, {1029, 70}}) {
      std::vector<float> x_f32;
      auto x = random_bf16(size_t(rows) * k, 1.0f, &x_f32);
      auto weight = random_bf16(size_t(n) * k, 0.1f);
      auto bias = random_bf16(n, 0.5f);
      std::vector<float> expected(size_t(rows) * n);
      ops::linear(cpu_, f32_view(x_f32, Shape{rows, k}), view(weight.data(), DType::kBF16, Shape{n, k}),
                  view(bias.data(), DType::kBF16, Shape{n}), f32_view(expected, Shape{rows, n}));
      float* out = poisoned<float>(expected.size());
      cuda::gemm_bf16(exec_, upload(x), upload(weight), upload(bias), rows, n, k, out);
      EXPECT_LT(relative_error(download(out, expected.size()), expected), 1e-5) << rows << "x" << k << "x" << n;
      // bf16 output (no bias): the float32 product rounded, within bf16's half ulp (2⁻⁹) per element.
      std::vector<float> unbiased(expected.size());
      ops::linear(cpu_, f32_view(x_f32, Shape{rows, k}), view(weight.data(), DType::kBF16, Shape{n, k}), TensorView{},
                  f32_view(unbiased, Shape{rows, n}));
      uint16_t* out_bf16 = poisoned<uint16_t>(expected.size());
      cuda::gemm_bf16(exec_, upload(x), upload(weight), rows, n, k, out_bf16);
      const auto got_bf16 = download(out_bf16, expected.size());
      std::vector<float> widened(got_bf16.size());
      for (size_t i = 0; i < got_bf16.size(); ++i) widened[i] = bf16_to_f32(got_bf16[i]);
      EXPECT_LT(relative_error(widened, unbiased), 3e-3) << "bf16 out " << rows << "x" << k << "x" << n;
    }
  }
}

// Split activations (hi + lo, two GEMMs, the second accumulating) match float32 activations.
TEST_F(CudaOpsTest, CublasSplitGemmMatchesFloat32Linear) {
  for (auto [rows, k, n] : {std::tuple{17, 64, 33}, {300, 1029, 70}}) {
    auto x = random_floats(size_t(rows) * k);
    auto weight = random_bf16(size_t(n) * k, 0.1f);
    std::vector<float> expected(size_t(rows) * n);
    ops::linear(cpu_, f32_view(x, Shape{rows, k}), view(weight.data(), DType::kBF16, Shape{n, k}), TensorView{},
                f32_view(expected, Shape{rows, n}));
    uint16_t* hi = poisoned<uint16_t>(x.size());
    uint16_t* lo = poisoned<uint16_t>(x.size());
    cuda::to_bf16_split(exec_, upload(x), int64_t(x.size()), hi, lo);
    float* out = poisoned<float>(expected.size());
    const uint16_t* w = upload(weight);
    cuda::gemm_bf16(exec_, hi, w, nullptr, rows, n, k, out);
    cuda::gemm_bf16(exec_, lo, w, nullptr, rows, n, k, out, /*accumulate=*/true);
    EXPECT_LT(relative_error(download(out, expected.size()), expected), 2e-5) << rows << "x" << k << "x" << n;
  }
}

TEST_F(CudaOpsTest, SiluMulAndCasts) {
  for (auto [rows, inter] : {std::pair{1, 7}, {33, 300}, {70000, 3}}) {
    auto gate_up = random_floats(size_t(rows) * 2 * inter, 3.0f);
    std::vector<float> gate(size_t(rows) * inter), up(gate.size()), expected(gate.size());
    for (int r = 0; r < rows; ++r) {
      std::copy_n(gate_up.data() + size_t(r) * 2 * inter, inter, gate.data() + size_t(r) * inter);
      std::copy_n(gate_up.data() + size_t(r) * 2 * inter + inter, inter, up.data() + size_t(r) * inter);
    }
    ops::silu_mul(cpu_, f32_view(gate, Shape{rows, inter}), f32_view(up, Shape{rows, inter}),
                  f32_view(expected, Shape{rows, inter}));
    // GPT-OSS's clamped form (3-sigma inputs: many clamp at 1.5) from both input types.
    const ops::GluParams clamped{.clamped = true, .alpha = 1.702f, .limit = 1.5f};
    std::vector<float> expected_clamped(gate.size());
    ops::silu_mul(cpu_, gate_up.data(), rows, inter, expected_clamped.data(), nullptr, clamped);
    float* out_clamped = poisoned<float>(expected.size());
    cuda::silu_mul(exec_, upload(gate_up), rows, inter, out_clamped, nullptr, clamped);
    EXPECT_LT(relative_error(download(out_clamped, expected.size()), expected_clamped), 1e-6);
    float* out = poisoned<float>(expected.size());
    uint16_t* out_bf16 = poisoned<uint16_t>(expected.size());
    cuda::silu_mul(exec_, upload(gate_up), rows, inter, out, out_bf16);
    const auto got = download(out, expected.size());
    EXPECT_LT(relative_error(got, expected), 1e-6);
    const auto got_bf16 = download(out_bf16, expected.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got_bf16[i], f32_to_bf16(got[i]));
    // From a bf16 gate_up: exactly what the float32 input of the same (rounded) values gives.
    std::vector<uint16_t> gate_up_bf16(gate_up.size());
    std::vector<float> rounded(gate_up.size());
    for (size_t i = 0; i < gate_up.size(); ++i) {
      gate_up_bf16[i] = f32_to_bf16(gate_up[i]);
      rounded[i] = bf16_to_f32(gate_up_bf16[i]);
    }
    uint16_t* from_rounded = poisoned<uint16_t>(expected.size());
    cuda::silu_mul(exec_, upload(rounded), rows, inter, nullptr, from_rounded);
    uint16_t* from_bf16 = poisoned<uint16_t>(expected.size());
    cuda::silu_mul(exec_, upload(gate_up_bf16), rows, inter, from_bf16);
    EXPECT_EQ(download(from_bf16, expected.size()), download(from_rounded, expected.size()));
    uint16_t* cast = poisoned<uint16_t>(expected.size());
    cuda::to_bf16(exec_, upload(expected), int64_t(expected.size()), cast);
    float* back = poisoned<float>(expected.size());
    cuda::to_f32(exec_, cast, int64_t(expected.size()), back);
    const auto round_trip = download(back, expected.size());
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(round_trip[i], bf16_to_f32(f32_to_bf16(expected[i])));
  }
}

}  // namespace
}  // namespace moeserve
