// The CUDA side of `bench latency` (see bench_latency_cuda.h), compiled only in CUDA builds
// (cli/CMakeLists.txt; cli/no_cuda/ has the CPU-only builds' stand-in). Decode is counted as
// llama-batched-bench does: generated tokens ÷ decode time, with B sequences of input_len
// prompt tokens decoding output_len tokens each; every step is a greedy generation step as the
// engine runs one for greedy requests: the argmax on the device, one id per sequence copied back.
#include "cli/bench_latency_cuda.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cli/commands.h"
#include "device/cuda/cuda_device.h"
#include "model/weight_plan.h"
#include "backend/cuda/cuda_runner_device.h"

namespace moeserve::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Bytes of one routed-expert weight as the CUDA runner holds it: bf16, or MXFP4's 4 bits and an
// e8m0 scale per 32 (4.25 bits: GPT-OSS's experts as published).
double expert_bytes_per_weight(const ModelConfig& c) {
  return c.mxfp4_experts ? 0.5 + 1.0 / Projection::kMxBlock : 2.0;
}

// Weight bytes one decode step reads (bf16, the routed experts as expert_bytes_per_weight says;
// with fp8, every Linear weight an FP8 checkpoint stores as e4m3 — all but the LM head, the
// routers and the norms — at a byte plus a float32 scale per 128 columns of a row): the weight
// plan's tensors but the embedding table and the experts no token chose. routed_per_layer: the
// distinct routed experts a MoE layer runs (one token: top_k).
double decode_weight_bytes(const ModelConfig& c, const WeightPlan& plan, bool fp8, double routed_per_layer = -1.0) {
  const int scale_block = c.fp8_block_size ? (*c.fp8_block_size)[1] : 128;
  return decode_read_bytes(c, plan, routed_per_layer, [&](const WeightEntry& entry) {
    if (fp8 && entry.quantizable) return 1.0 + 4.0 / scale_block;
    return entry.component == Component::kRoutedExperts ? expert_bytes_per_weight(c) : 2.0;
  });
}

// Multiply-adds × 2 of a prefill of `batch` sequences of `len` tokens: every projection for
// every token (active experts only), causal attention (q·k over the key width, p·v over the value
// width; MLA counted in its plain form, keys of qk_head_dim and values of v_head_dim per head, as
// vLLM's prefill runs it), and the lm_head for one row each.
double prefill_flops(const ModelConfig& c, const WeightPlan& plan, int batch, int len) {
  const double tokens = double(batch) * len;
  const double linear = decode_read_elements(c, plan) - double(c.hidden_size) * c.vocab_size;
  const double key_plus_value = c.is_mla() ? c.mla->qk_head_dim() + c.mla->v_head_dim : 2.0 * c.head_dim;
  const double attention = c.num_layers * c.num_heads * key_plus_value * double(len) * (len + 1) * batch;
  return 2.0 * linear * tokens + attention + 2.0 * double(c.hidden_size) * c.vocab_size * batch;
}

struct Batch {
  std::vector<std::vector<int32_t>> tokens, tables;
};

// B sequences with their own blocks; every sequence's prompt is input_len pseudo-random ids.
Batch make_batch(int batch, int input_len, int max_tokens, int block_size, int vocab) {
  Batch b;
  const int blocks = (max_tokens + block_size - 1) / block_size;
  for (int s = 0; s < batch; ++s) {
    std::vector<int32_t> prompt(input_len);
    for (int i = 0; i < input_len; ++i) prompt[i] = int32_t((uint64_t(i) * 7919 + s * 104729 + 13) % vocab);
    b.tokens.push_back(prompt);
    std::vector<int32_t> table(blocks);
    std::iota(table.begin(), table.end(), s * blocks);
    b.tables.push_back(table);
  }
  return b;
}

struct DecodeResult {
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
};

DecodeResult run_decode(ModelRunner& runner, int batch, int input_len, int output_len) {
  const int vocab = runner.config().vocab_size;
  Batch b = make_batch(batch, input_len, input_len + output_len, runner.block_size(), vocab);
  for (auto& t : b.tokens) t.reserve(input_len + output_len);
  std::vector<RunnerSeq> step(batch);
  for (int s = 0; s < batch; ++s) {
    step[s] = RunnerSeq{
        .tokens = b.tokens[s], .num_computed = 0, .num_new = input_len, .samples = true, .block_table = b.tables[s]};
  }
  DecodeResult result;
  auto start = Clock::now();
  runner.execute(step);
  result.prefill_seconds = seconds_since(start);
  start = Clock::now();
  TokenChoice greedy_choice;
  greedy_choice.params.temperature = 0.0f;
  for (int token = 0; token < output_len; ++token) {
    const std::span<const int32_t> greedy = runner.picked_tokens();
    for (int s = 0; s < batch; ++s) {
      b.tokens[s].push_back(greedy[s]);
      step[s] = RunnerSeq{.tokens = b.tokens[s],
                          .num_computed = input_len + token,
                          .num_new = 1,
                          .samples = true,
                          .choice = &greedy_choice,
                          .block_table = b.tables[s]};
    }
    runner.execute(step);
  }
  result.decode_seconds = seconds_since(start);
  return result;
}

// Copy bandwidth (bytes read + written) of a 2 GiB device-to-device copy, best of 5.
double copy_bandwidth(const cuda::CudaStream& stream) {
  const size_t bytes = size_t{2} << 30;
  auto a = cuda::DeviceBuffer::allocate(bytes);
  auto b = cuda::DeviceBuffer::allocate(bytes);
  if (!a.ok() || !b.ok()) fail("cannot allocate the copy-bandwidth buffers");
  cuda::EventTimer timer;
  double best = 0.0;
  for (int trial = 0; trial < 6; ++trial) {
    timer.start(stream.stream());
    cuda::copy_device(b->data(), a->data(), bytes, stream.stream());
    timer.stop(stream.stream());
    if (trial > 0) best = std::max(best, 2.0 * bytes / timer.seconds());
  }
  return best;
}

// cuBLAS bf16 GEMM rate (8192³, random data), best of 5.
double gemm_tflops(const cuda::CudaStream& stream) {
  const int n = 8192;
  const cuda::GpuExec exec{stream.stream(), stream.blas()};
  auto a = cuda::DeviceBuffer::allocate(size_t(n) * n * 2);
  auto b = cuda::DeviceBuffer::allocate(size_t(n) * n * 2);
  auto c = cuda::DeviceBuffer::allocate(size_t(n) * n * 4);
  if (!a.ok() || !b.ok() || !c.ok()) fail("cannot allocate the GEMM buffers");
  cuda::fill_random_bf16(exec, a->as<uint16_t>(), int64_t(n) * n, 1, 1.0f, 0.0f);
  cuda::fill_random_bf16(exec, b->as<uint16_t>(), int64_t(n) * n, 2, 1.0f, 0.0f);
  cuda::EventTimer timer;
  double best = 0.0;
  for (int trial = 0; trial < 6; ++trial) {
    timer.start(stream.stream());
    cuda::gemm_bf16(exec, a->as<uint16_t>(), b->as<uint16_t>(), nullptr, n, n, n, c->as<float>());
    timer.stop(stream.stream());
    if (trial > 0) best = std::max(best, 2.0 * n * n * double(n) / timer.seconds() / 1e12);
  }
  return best;
}

// Device seconds per launch() (queued work on `stream`), over `iters` launches after `warmups`.
template <typename Launch>
double seconds_per_launch(const cuda::CudaStream& stream, int warmups, int iters, Launch&& launch) {
  cuda::EventTimer timer;
  for (int i = 0; i < warmups; ++i) launch();
  timer.start(stream.stream());
  for (int i = 0; i < iters; ++i) launch();
  timer.stop(stream.stream());
  return timer.seconds() / iters;
}

// Achieved bandwidth of the decode step's dominant kernels on this model's shapes: the dense
// qkv projection and the grouped expert GEMMs (top_k experts chosen by `rows` tokens); fp8: the
// experts' weights as FP8 (an FP8 checkpoint's, or --quantization fp8's).
nlohmann::json kernel_bandwidths(const cuda::CudaStream& stream, const ModelConfig& c, bool fp8) {
  const cuda::GpuExec exec{stream.stream(), stream.blas()};
  nlohmann::json out = nlohmann::json::array();
  const int hidden = c.hidden_size;
  auto time_it = [&](auto&& launch) { return seconds_per_launch(stream, 3, 20, launch); };
  const int qkv_out = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  auto w = cuda::DeviceBuffer::allocate(size_t(qkv_out) * hidden * 2);
  // x [64 · top_k, max(hidden, inter)] float32: the dense GEMMs read 64 rows of it, the grouped
  // experts of 64 tokens 64 · top_k permuted rows. y: the widest output of either.
  const int inter = c.moe ? c.moe->expert_intermediate_size : 0;
  const size_t expert_rows = size_t(64) * (c.moe ? c.moe->top_k : 1);
  auto x = cuda::DeviceBuffer::allocate(expert_rows * std::max(hidden, inter) * 4);
  auto y = cuda::DeviceBuffer::allocate(std::max(size_t(64) * qkv_out, expert_rows * std::max(2 * inter, hidden)) * 4);
  if (!w.ok() || !x.ok() || !y.ok()) fail("cannot allocate kernel benchmark buffers");
  cuda::fill_random_bf16(exec, w->as<uint16_t>(), int64_t(qkv_out) * hidden, 3, 0.02f, 0.0f);
  cuda::fill_zero(x->data(), x->bytes(), stream.stream());
  auto x_hi = cuda::DeviceBuffer::allocate(size_t(64) * hidden * 2);
  auto x_lo = cuda::DeviceBuffer::allocate(size_t(64) * hidden * 2);
  if (!x_hi.ok() || !x_lo.ok()) fail("cannot allocate kernel benchmark buffers");
  for (int rows : {1, 2, 4, 8, 16, 32, 64}) {
    const cuda::GemmArgs args{.x = x->as<float>(),
                              .rows = rows,
                              .k = hidden,
                              .n = qkv_out,
                              .weight = w->as<uint16_t>(),
                              .out = y->as<float>()};
    auto report = [&](const char* kernel, double s) {
      out.push_back(
          {{"kernel", kernel}, {"rows", rows}, {"seconds", s}, {"gb_per_s", double(qkv_out) * hidden * 2 / s / 1e9}});
    };
    const size_t workspace_floats =
        std::max(cuda::mma_gemm_workspace_floats(args), cuda::small_gemm_workspace_floats(args));
    auto workspace = cuda::DeviceBuffer::allocate(std::max<size_t>(4, workspace_floats * 4));
    if (!workspace.ok()) fail("cannot allocate kernel benchmark buffers");
    if (rows <= cuda::kSmallTile) {
      report("small_gemm qkv", time_it([&] { cuda::small_gemm(exec, args); }));
      report("small_gemm split-K qkv", time_it([&] { cuda::small_gemm(exec, args, workspace->as<float>()); }));
    }
    if (cuda::mma_gemm_supported(hidden)) {
      report("mma_gemm split qkv", time_it([&] { cuda::mma_gemm(exec, args, true); }));
      report("mma_gemm split split-K qkv", time_it([&] { cuda::mma_gemm(exec, args, true, workspace->as<float>()); }));
      report("mma_gemm bf16 split-K qkv", time_it([&] { cuda::mma_gemm(exec, args, false, workspace->as<float>()); }));
    }
    report("cublas split qkv (2 GEMMs + cast)", time_it([&] {
             cuda::to_bf16_split(exec, x->as<float>(), int64_t(rows) * hidden, x_hi->as<uint16_t>(),
                                 x_lo->as<uint16_t>());
             cuda::gemm_bf16(exec, x_hi->as<uint16_t>(), w->as<uint16_t>(), nullptr, rows, qkv_out, hidden,
                             y->as<float>());
             cuda::gemm_bf16(exec, x_lo->as<uint16_t>(), w->as<uint16_t>(), nullptr, rows, qkv_out, hidden,
                             y->as<float>(), true);
           }));
    report("cublas bf16 qkv", time_it([&] {
             cuda::gemm_bf16(exec, x_hi->as<uint16_t>(), w->as<uint16_t>(), nullptr, rows, qkv_out, hidden,
                             y->as<float>());
           }));
  }
  if (c.moe) {
    const MoeConfig& m = *c.moe;
    auto experts = cuda::DeviceBuffer::allocate(size_t(m.num_experts) * 2 * m.expert_intermediate_size * hidden * 2);
    auto offsets_buf = cuda::DeviceBuffer::allocate(size_t(m.num_experts + 1) * 4);
    // GPT-OSS: the experts as MXFP4, as the runner holds them (the random bits as codes, zero scales).
    // FP8: the random bits as e4m3 codes, a float32 scale per 128 columns of a row (zero).
    const bool mx = c.mxfp4_experts;
    const bool f8 = fp8 && !mx;
    const int scale_block = cuda::kFp8Group;
    auto mx_scales = cuda::DeviceBuffer::allocate(
        mx ? size_t(m.num_experts) * 2 * m.expert_intermediate_size * hidden / Projection::kMxBlock : 1);
    // [E, 2 · inter, ceil(hidden / 128)] floats: the gate/up scales (the down projection's are fewer)
    const int64_t gate_up_scale_stride = 2LL * m.expert_intermediate_size * ((hidden + scale_block - 1) / scale_block);
    auto f8_scales = cuda::DeviceBuffer::allocate(f8 ? size_t(m.num_experts) * gate_up_scale_stride * 4 : 4);
    if (!experts.ok() || !offsets_buf.ok() || !mx_scales.ok() || !f8_scales.ok()) {
      fail("cannot allocate expert benchmark buffers");
    }
    cuda::fill_zero(f8_scales->data(), f8_scales->bytes(), stream.stream());
    cuda::fill_random_bf16(exec, experts->as<uint16_t>(),
                           int64_t(m.num_experts) * 2 * m.expert_intermediate_size * hidden, 4, 0.02f, 0.0f);
    cuda::fill_zero(mx_scales->data(), mx_scales->bytes(), stream.stream());
    for (int tokens : {1, 2, 4, 8, 32, 64}) {
      // tokens × top_k rows spread over the first min(E, tokens × top_k) experts.
      const int entries = tokens * m.top_k;
      const int touched = std::min(m.num_experts, entries);
      std::vector<int32_t> offsets(m.num_experts + 1, entries);
      for (int e = 0; e <= touched; ++e) offsets[e] = e * entries / touched;
      cuda::copy_to_device(offsets_buf->data(), offsets.data(), offsets.size() * 4, stream.stream());
      cuda::GemmArgs args{.x = x->as<float>(),
                          .rows = tokens,
                          .k = hidden,
                          .n = m.expert_intermediate_size,
                          .weight = experts->as<uint16_t>(),
                          .group_stride = 2LL * m.expert_intermediate_size * hidden,
                          .offsets = offsets_buf->as<int32_t>(),
                          .groups = m.num_experts,
                          .total_rows = entries,
                          .swiglu = true,
                          .out = y->as<float>()};
      if (mx) {
        args.weight = nullptr;
        args.weight_mxfp4 = experts->as<uint8_t>();
        args.mx_scale = mx_scales->as<uint8_t>();
      } else if (f8) {
        args.weight = nullptr;
        args.weight_fp8 = experts->as<uint8_t>();
        args.fp8 = ops::Fp8Scales{.scale = f8_scales->as<float>(), .block = scale_block, .offset = 0};
        args.scale_group_stride = gate_up_scale_stride;
      }
      const double bytes_per_weight = f8 ? 1.0 + 4.0 / scale_block : expert_bytes_per_weight(c);
      const double bytes = double(touched) * 2 * m.expert_intermediate_size * hidden * bytes_per_weight;
      auto report = [&](const char* kernel, double s, double weight_bytes) {
        out.push_back({{"kernel", kernel},
                       {"tokens", tokens},
                       {"experts_touched", touched},
                       {"weights", mx   ? "mxfp4"
                                   : f8 ? "fp8"
                                        : "bf16"},
                       {"seconds", s},
                       {"gb_per_s", weight_bytes / s / 1e9}});
      };
      if (tokens <= cuda::kSmallTile)
        report("small_gemm experts gate_up+silu", time_it([&] { cuda::small_gemm(exec, args); }), bytes);
      if (cuda::mma_gemm_supported(hidden) && (!f8 || cuda::mma_gemm_supports_fp8(hidden, args.fp8))) {
        report("mma_gemm split experts gate_up+silu", time_it([&] { cuda::mma_gemm(exec, args, true); }), bytes);
        report("mma_gemm bf16 experts gate_up+silu", time_it([&] { cuda::mma_gemm(exec, args, false); }), bytes);
      }
      // FP8 in the bf16 mode: W8A8, the activations quantized inside the kernel.
      cuda::GemmArgs w8a8 = args;
      w8a8.fp8.quantize_activations = true;
      if (f8 && cuda::mma_gemm_supports_fp8(hidden, w8a8.fp8)) {
        report("mma_gemm w8a8 experts gate_up+silu", time_it([&] { cuda::mma_gemm(exec, w8a8, false); }), bytes);
      }
      if (cuda::mma_gemm_supported(m.expert_intermediate_size) &&
          (!f8 || cuda::mma_gemm_supports_fp8(m.expert_intermediate_size, args.fp8))) {
        cuda::GemmArgs down = args;
        down.k = m.expert_intermediate_size;
        down.n = hidden;
        down.group_stride = int64_t(hidden) * m.expert_intermediate_size;
        down.scale_group_stride = int64_t(hidden) * ((m.expert_intermediate_size + scale_block - 1) / scale_block);
        down.swiglu = false;
        const size_t workspace_floats =
            std::max(cuda::mma_gemm_workspace_floats(down), cuda::small_gemm_workspace_floats(down));
        auto workspace = cuda::DeviceBuffer::allocate(std::max<size_t>(4, workspace_floats * 4));
        if (!workspace.ok()) fail("cannot allocate kernel benchmark buffers");
        report("mma_gemm split experts down (split K)",
               time_it([&] { cuda::mma_gemm(exec, down, true, workspace->as<float>()); }), bytes / 2);
        report("mma_gemm split experts down (unsplit)", time_it([&] { cuda::mma_gemm(exec, down, true); }), bytes / 2);
        cuda::GemmArgs down_w8a8 = down;
        down_w8a8.fp8.quantize_activations = true;
        if (f8 && cuda::mma_gemm_supports_fp8(down.k, down_w8a8.fp8)) {
          report("mma_gemm w8a8 experts down (split K)",
                 time_it([&] { cuda::mma_gemm(exec, down_w8a8, false, workspace->as<float>()); }), bytes / 2);
        }
        if (tokens <= cuda::kSmallTile) {
          report("small_gemm experts down (split K)",
                 time_it([&] { cuda::small_gemm(exec, down, workspace->as<float>()); }), bytes / 2);
          report("small_gemm experts down (unsplit)", time_it([&] { cuda::small_gemm(exec, down); }), bytes / 2);
        }
      }
    }
  }
  stream.synchronize();
  return out;
}

// The prefill GEMMs of this shape (the dense qkv at `tokens` rows; an expert's gate/up and down
// at the rows each expert gets when tokens · top_k spread evenly) through cuBLAS in bf16 and as
// W8A8 on FP8 tensor cores (linear_fp8 with the weights' scales per row and per 128 × 128 block,
// and its activation quantization alone), in TFLOP/s. Empty where the shapes are not
// FP8-tensor-core shapes.
nlohmann::json prefill_gemm_rates(const cuda::CudaStream& stream, const ModelConfig& c, int tokens) {
  const cuda::GpuExec exec{stream.stream(), stream.blas()};
  nlohmann::json out = nlohmann::json::array();
  if (tokens <= 0) return out;
  struct Shape {
    const char* name;
    int m, n, k;
  };
  std::vector<Shape> shapes = {{"qkv", tokens, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size}};
  if (c.moe) {
    const int rows = std::max(1, tokens * c.moe->top_k / c.moe->num_experts);
    const int inter = c.moe->expert_intermediate_size;
    shapes.push_back({"expert gate_up", rows, 2 * inter, c.hidden_size});
    shapes.push_back({"expert down", rows, c.hidden_size, inter});
  }
  auto time_it = [&](auto&& launch) { return seconds_per_launch(stream, 2, 10, launch); };
  for (const Shape& s : shapes) {
    const ops::Fp8Scales probe{.block = cuda::kFp8Group, .offset = 0};
    if (s.k % cuda::kFp8Group != 0 || !cuda::linear_fp8_supported(s.n, s.k, probe)) continue;
    auto x = cuda::DeviceBuffer::allocate(size_t(s.m) * s.k * 2);
    auto w = cuda::DeviceBuffer::allocate(size_t(s.n) * s.k * 2);
    auto w_fp8 = cuda::DeviceBuffer::allocate(size_t(s.n) * s.k);
    auto scales = cuda::DeviceBuffer::allocate(size_t(s.n) * (s.k / cuda::kFp8Group) * 4);
    auto y = cuda::DeviceBuffer::allocate(size_t(s.m) * s.n * 4);
    auto workspace = cuda::DeviceBuffer::allocate(cuda::linear_fp8_workspace_bytes(s.m, s.n, s.k));
    if (!x.ok() || !w.ok() || !w_fp8.ok() || !scales.ok() || !y.ok() || !workspace.ok()) {
      fail("cannot allocate GEMM benchmark buffers");
    }
    cuda::fill_random_bf16(exec, x->as<uint16_t>(), int64_t(s.m) * s.k, 5, 1.0f, 0.0f);
    cuda::fill_random_bf16(exec, w->as<uint16_t>(), int64_t(s.n) * s.k, 6, 0.02f, 0.0f);
    cuda::fill_random_bytes(exec, w_fp8->as<uint8_t>(), int64_t(s.n) * s.k, 7, true, 0, 0xbf);  // e4m3, |v| < 2
    std::vector<float> host_scales(size_t(s.n) * (s.k / cuda::kFp8Group), 1.0f / 32);
    cuda::copy_to_device(scales->data(), host_scales.data(), host_scales.size() * 4, stream.stream());
    const double flops = 2.0 * s.m * double(s.n) * s.k;
    auto report = [&](const char* kernel, double seconds) {
      out.push_back({{"kernel", kernel},
                     {"gemm", s.name},
                     {"m", s.m},
                     {"n", s.n},
                     {"k", s.k},
                     {"seconds", seconds},
                     {"tflops", flops / seconds / 1e12}});
    };
    report("cublas bf16", time_it([&] {
             cuda::gemm_bf16(exec, x->as<uint16_t>(), w->as<uint16_t>(), nullptr, s.m, s.n, s.k, y->as<float>());
           }));
    for (bool row_blocks : {false, true}) {  // the weights' scales per row, or per 128 × 128 block
      const ops::Fp8Scales fp8{
          .scale = scales->as<float>(), .block = cuda::kFp8Group, .offset = 0, .row_blocks = row_blocks};
      bool ran = true;
      report(row_blocks ? "linear_fp8 block scales (quantize + cuBLASLt)"
                        : "linear_fp8 row scales (quantize + cuBLASLt)",
             time_it([&] {
               ran = ran && cuda::linear_fp8(exec, nullptr, x->as<uint16_t>(), s.m, w_fp8->as<uint8_t>(), fp8, s.n, s.k,
                                             y->as<float>(), nullptr, workspace->data());
             }));
      if (!ran) out.back()["kernel"] = "linear_fp8: no cuBLASLt kernel";
    }
    report("quantize_fp8_rows", time_it([&] {
             cuda::quantize_fp8_rows(exec, nullptr, x->as<uint16_t>(), s.m, s.m, s.k, false, workspace->as<uint8_t>(),
                                     reinterpret_cast<float*>(workspace->as<uint8_t>() + size_t(s.m) * s.k));
           }));
  }
  stream.synchronize();
  return out;
}

// Weight bytes an op kind streams in one decode step of `tokens` rows (0 when not weight-bound).
double op_weight_bytes(const ModelConfig& c, const std::string& op, int tokens) {
  const double layers = c.num_layers, hidden = c.hidden_size;
  if (op == "attn.qkv_proj") return layers * (c.num_heads + 2.0 * c.num_kv_heads) * c.head_dim * hidden * 2;
  if (op == "attn.o_proj") return layers * hidden * c.num_heads * c.head_dim * 2;
  if (op == "final_norm_lm_head") return double(c.vocab_size) * hidden * 2;
  if (!c.moe) return op == "mlp" ? layers * 3.0 * c.intermediate_size * hidden * 2 : 0.0;
  if (op == "moe.router") return layers * c.moe->num_experts * hidden * 2;
  if (op == "moe.experts") {
    const double touched = std::min(c.moe->num_experts, tokens * c.moe->top_k);  // upper bound of distinct experts
    return layers * touched * 3.0 * c.moe->expert_intermediate_size * hidden * expert_bytes_per_weight(c);
  }
  return 0.0;
}

// One profiled step: a decode step of `batch` sequences after an input_len prefill, or (decode
// false) the prefill itself. Per op kind: device seconds, share of the step, achieved GB/s.
nlohmann::json profile_step(ModelRunner& runner, int batch, int input_len, bool decode) {
  const ModelConfig& config = runner.config();
  Batch b = make_batch(batch, input_len, input_len + 1, runner.block_size(), config.vocab_size);
  std::vector<RunnerSeq> step(batch);
  for (int s = 0; s < batch; ++s) {
    step[s] = RunnerSeq{.tokens = b.tokens[s], .num_new = input_len, .samples = true, .block_table = b.tables[s]};
  }
  cuda::OpProfile profile;
  CudaRunnerDevice& device = cuda_device(runner);
  if (!decode) device.set_profile(&profile);
  auto start = Clock::now();
  runner.execute(step);
  double seconds = seconds_since(start);
  if (decode) {
    for (int s = 0; s < batch; ++s) {
      b.tokens[s].push_back(1);
      step[s] = RunnerSeq{
          .tokens = b.tokens[s], .num_computed = input_len, .num_new = 1, .samples = true, .block_table = b.tables[s]};
    }
    device.set_profile(&profile);
    runner.reset_expert_load();
    start = Clock::now();
    runner.execute(step);
    seconds = seconds_since(start);
  }
  device.set_profile(nullptr);
  // Distinct routed experts the step ran, averaged over the MoE layers (decode: what the step's
  // weight bytes depend on; dummy weights route unevenly, so this is counted, not assumed).
  double routed_per_layer = 0.0;
  if (decode && config.moe) {
    const ExpertLoad& load = runner.expert_load();
    int64_t touched = 0, moe_layers = 0;
    for (int layer = 0; layer < config.num_layers; ++layer) {
      if (!config.layer_is_moe[layer]) continue;
      ++moe_layers;
      for (int e = 0; e < load.num_experts; ++e) touched += load.counts[size_t(layer) * load.num_experts + e] > 0;
    }
    routed_per_layer = moe_layers > 0 ? double(touched) / moe_layers : 0.0;
    runner.reset_expert_load();
  }
  nlohmann::json ops = nlohmann::json::object();
  double device_total = 0.0;
  for (const auto& [name, s] : profile.totals()) device_total += s;
  for (const auto& [name, s] : profile.totals()) {
    nlohmann::json entry = {{"seconds", s}, {"share_of_device_time", s / device_total}};
    const double bytes = decode ? op_weight_bytes(config, name, batch) : 0.0;
    if (bytes > 0.0) entry["weight_gb_per_s"] = bytes / s / 1e9;
    ops[name] = entry;
  }
  return {{"phase", decode ? "decode" : "prefill"},
          {"batch", batch},
          {"input_len", input_len},
          {"step_wall_seconds", seconds},
          {"profiled_device_seconds", device_total},
          {"routed_experts_per_moe_layer", routed_per_layer},
          {"ops", ops}};
}

}  // namespace

void run_bench_latency_cuda(const CudaLatencyArgs& args) {
  const RunnerSpec& spec = *args.spec;
  const ModelRunnerOptions runner_options{.gpu_memory_utilization = args.gpu_memory_utilization,
                                          .max_num_batched_tokens = args.max_num_batched_tokens};
  // The machine's ceilings and the kernels in isolation first, on buffers freed before the runner
  // sizes its KV cache from the free memory (a model with many large experts, DeepSeek-V3's 256,
  // needs ~15 GB for the expert GEMMs' benchmark weights alone). Their shapes are the config the
  // command parsed, which the runner is built from too.
  auto stream = cuda::CudaStream::create(0);
  if (!stream.ok()) fail(stream.error().message);
  const double bandwidth = copy_bandwidth(*stream);
  const double gemm_rate = gemm_tflops(*stream);
  // FP8 weights: an fp8 checkpoint's, or --quantization fp8's (CUDA holds them as FP8).
  const bool fp8 = spec.config.fp8_block_size.has_value() || spec.load.model.precision.quantize_fp8;
  const nlohmann::json kernels = kernel_bandwidths(*stream, spec.config, fp8);
  const nlohmann::json prefill_gemms = prefill_gemm_rates(*stream, spec.config, args.prefill_batch * args.prefill_len);
  auto start = Clock::now();
  auto runner = make_cuda_runner(spec.model_dir, spec.config, spec.load,
                                 CudaDeviceOptions{.enforce_eager = args.enforce_eager}, runner_options);
  if (!runner.ok()) fail(runner.error().message);
  CudaRunnerDevice& device = cuda_device(**runner);
  device.synchronize();
  const double load_seconds = seconds_since(start);
  const ModelConfig& config = (*runner)->config();
  const WeightPlan plan = WeightPlan::build(config);  // bytes and FLOPs per step
  nlohmann::json result = {{"benchmark", "latency"},
                           {"model", spec.model_dir},
                           {"device", "cuda"},
                           {"input_len", args.input_len},
                           {"output_len", args.output_len},
                           {"num_iters", args.num_iters},
                           {"load_seconds", load_seconds},
                           {"weight_bytes", device.weight_bytes()},
                           {"kv_cache_bytes", device.kv_bytes()},
                           {"num_kv_blocks", (*runner)->num_kv_blocks()},
                           {"workspace_bytes", device.workspace_capacity()},
                           // the start-up profile run's (before any step below)
                           {"profiled_workspace_peak_bytes", device.workspace_peak()},
                           {"profiled_outside_workspace_bytes", (*runner)->profiled_outside_workspace()},
                           {"prefill_precision", cuda::prefill_precision_name(device.prefill_precision())},
                           {"cuda_graphs", !args.enforce_eager}};
  // Every sequence of a batch holds its own blocks for the whole run: refuse, before anything runs,
  // a batch the KV cache cannot hold (rather than letting the step's block tables overrun it).
  const int block_size = (*runner)->block_size();
  const auto check_fits = [&](int batch, int tokens, const char* what) {
    const int64_t needed = int64_t(batch) * ((tokens + block_size - 1) / block_size);
    if (needed > (*runner)->num_kv_blocks()) {
      fail(fmt::format("{} of {} sequences x {} tokens needs {} KV-cache blocks of {} tokens; the cache holds {} "
                       "({:.1f} GiB at --gpu-memory-utilization {}): lower the batch or the lengths, or raise "
                       "--gpu-memory-utilization",
                       what, batch, tokens, needed, block_size, (*runner)->num_kv_blocks(),
                       device.kv_bytes() / double(1 << 30), args.gpu_memory_utilization));
    }
  };
  for (int batch : args.batch_sizes) check_fits(batch, args.input_len + args.output_len, "--batch-size");
  if (args.prefill_len > 0) check_fits(args.prefill_batch, args.prefill_len + 1, "--prefill-batch");
  auto devices = cuda::list_devices();
  if (devices.ok() && !devices->empty()) result["gpu"] = devices->front().name;
  nlohmann::json decode = nlohmann::json::object();
  for (int batch : args.batch_sizes) {
    DecodeResult best{1e30, 1e30};
    for (int iter = 0; iter <= args.num_iters; ++iter) {  // iteration 0 warms up
      const DecodeResult r = run_decode(**runner, batch, args.input_len, args.output_len);
      if (iter == 0) continue;
      best.prefill_seconds = std::min(best.prefill_seconds, r.prefill_seconds);
      best.decode_seconds = std::min(best.decode_seconds, r.decode_seconds);
    }
    const double tps = double(batch) * args.output_len / best.decode_seconds;
    decode[std::to_string(batch)] = {{"decode_seconds", best.decode_seconds},
                                     {"decode_tok_s", tps},
                                     {"prompt_prefill_seconds", best.prefill_seconds}};
    result["decode_bs" + std::to_string(batch) + "_tok_s"] = tps;
    std::fprintf(stderr, "batch %d: %.1f tok/s decode\n", batch, tps);
  }
  result["decode"] = decode;
  if (args.prefill_len > 0) {
    double best = 1e30;
    for (int iter = 0; iter <= args.num_iters; ++iter) {
      best = std::min(best, run_decode(**runner, args.prefill_batch, args.prefill_len, 0).prefill_seconds);
    }
    const double tokens = double(args.prefill_batch) * args.prefill_len;
    result["prefill_batch"] = args.prefill_batch;
    result["prefill_len"] = args.prefill_len;
    result["prefill_seconds"] = best;
    result["prefill_tok_s"] = tokens / best;
    result["prefill_tflops"] = prefill_flops(config, plan, args.prefill_batch, args.prefill_len) / best / 1e12;
  }
  result["weights"] = fp8 ? "fp8" : "bf16";
  result["kv_cache"] = spec.load.kv_cache_fp8 ? "fp8" : "float32";
  const double bytes_per_token = decode_weight_bytes(config, plan, fp8);
  result["copy_bandwidth_bytes_per_s"] = bandwidth;
  result["gemm_bf16_tflops"] = gemm_rate;
  result["weight_bytes_per_decode_token"] = bytes_per_token;
  result["decode_bs1_roofline_tok_s"] = bandwidth / bytes_per_token;
  if (result.contains("decode_bs1_tok_s")) {
    result["decode_bs1_roofline_fraction"] = result["decode_bs1_tok_s"].get<double>() / (bandwidth / bytes_per_token);
  }
  if (result.contains("prefill_tflops")) {
    result["prefill_fraction_of_gemm_rate"] =
        result["prefill_tflops"].get<double>() / result["gemm_bf16_tflops"].get<double>();
  }
  result["kernels"] = kernels;
  result["prefill_gemms"] = prefill_gemms;
  nlohmann::json profiles = nlohmann::json::array();
  for (int batch : args.batch_sizes) profiles.push_back(profile_step(**runner, batch, args.input_len, true));
  if (args.prefill_len > 0) profiles.push_back(profile_step(**runner, args.prefill_batch, args.prefill_len, false));
  result["op_profiles"] = profiles;
  // Each decode batch against the roofline of the bytes its steps touch: the weights of the
  // experts they ran (counted in the profiled step) and every other weight once, plus the KV
  // cache read at the run's mean context (input_len + output_len / 2).
  const double kv_bytes_per_token_layer =
      double(device.kv_bytes()) / (double((*runner)->num_kv_blocks()) * (*runner)->block_size() * config.num_layers);
  for (size_t i = 0; i < args.batch_sizes.size(); ++i) {
    const int batch = args.batch_sizes[i];
    const double routed = profiles[i]["routed_experts_per_moe_layer"].get<double>();
    const double context = args.input_len + args.output_len / 2.0;
    const double step_bytes = decode_weight_bytes(config, plan, fp8, config.moe ? routed : -1.0) +
                              double(batch) * context * kv_bytes_per_token_layer * config.num_layers;
    const double roofline = batch * bandwidth / step_bytes;
    nlohmann::json& entry = result["decode"][std::to_string(batch)];
    entry["step_bytes"] = step_bytes;
    entry["routed_experts_per_moe_layer"] = routed;
    entry["roofline_tok_s"] = roofline;
    entry["roofline_fraction"] = entry["decode_tok_s"].get<double>() / roofline;
    result["decode_bs" + std::to_string(batch) + "_roofline_fraction"] = entry["roofline_fraction"];
  }
  std::printf("%s\n", result.dump(2).c_str());
  write_result_json(args.output_json, result);
}

}  // namespace moeserve::cli
