// The arena a step reserves, from the config alone: the decoder loop's buffers and the CUDA
// runner's whole bound (CudaModel::workspace_bytes). `moeserve plan` and serve's start-up check
// count these same bytes, so the plan and the allocation cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "model/config.h"

namespace moeserve {

// Floats of step workspace an MoE block needs per token. experts_large: the routed experts run one
// expert at a time (CUDA past kMaxMmaRows rows) rather than streamed with split-K sums.
int64_t moe_floats_per_token(const ModelConfig& config, bool experts_large);

// Arena bytes a decoder-loop step of up to max_tokens rows and max_logit_rows logit rows (< 0:
// as many as rows) needs, besides the backend's own scratch (extra_bytes: the CUDA GEMMs' split-K
// workspaces, the MLA score tile).
size_t step_workspace_bytes(const ModelConfig& config, int max_tokens, size_t extra_bytes, bool experts_large,
                            int max_logit_rows = -1);

namespace cuda {

// Score tile of the plain MLA prefill: heads × queries × keys floats (256 MiB).
constexpr size_t kMlaScoreFloats = size_t{64} << 20;
// The most rows the grouped expert GEMMs stream; past it experts run one at a time.
constexpr int kMaxMmaRows = 256;

// The CUDA runner's arena for steps of up to max_tokens rows and max_logit_rows logit rows (< 0: as
// many as rows; a server samples one row a sequence): the loop's buffers plus
// moe_permute's per-chunk counts, the plain MLA prefill's score tile, a prefill-sized step's
// float32 router weights, fp8_gemm_bytes(rows) (what the largest FP8 matrix's GEMM of that many
// rows needs; null: none) and 64 MiB of slack for the split-K workspaces. experts_large: the
// experts may run one at a time past kMaxMmaRows rows; then the larger of that shape at
// max_tokens and the streamed one at kMaxMmaRows.
size_t step_workspace_bytes(const ModelConfig& config, int max_tokens, bool experts_large,
                            const std::function<size_t(int rows)>& fp8_gemm_bytes = nullptr, int max_logit_rows = -1);

}  // namespace cuda
}  // namespace moeserve
