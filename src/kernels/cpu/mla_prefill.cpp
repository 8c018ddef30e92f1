// CPU reference: MLA attention of one prefill piece in the plain (up-projected) form, composed
// of the tensor ops — the piece's context latents gathered from the paged cache (kv_gather),
// expanded into per-head keys and values by kv_b (linear), then causal attention_dense:
//   latent [ctx, entry]      = cache rows of the sequence ([c (r) | k_pe (dr) | ...])
//   kv     [ctx, H, dn + dv] = latent[:, :r] · kv_bᵀ          (k_nope | v per head)
//   k      [ctx, H, dn + dr] = [k_nope | k_pe] (k_pe shared by every head)
//   out    [count, H, dv]    = attention_dense(q rows of the piece, k, v)
// An e4m3 cache (cache_fp8): the latents decoded exactly as they are gathered (kv_elements.h).
#include <cstring>
#include <vector>

#include "kernels/cpu/kv_elements.h"
#include "kernels/ops.h"

namespace moeserve::ops {

void mla_prefill_attention(ExecContext& ctx, const MlaPrefillArgs& args) {
  const MlaDims& d = args.dims;
  const int context = args.begin + args.count;
  const int entry = args.entry_size != 0 ? args.entry_size : d.rank + d.rope;  // [c | k_pe | ...]
  const int64_t heads = d.heads;
  const int64_t qk = d.nope + d.rope;
  const PagedKvLayer kv{.data = const_cast<float*>(args.cache),
                        .num_blocks = (context + args.block_size - 1) / args.block_size,
                        .block_size = args.block_size,
                        .entry_size = entry};
  std::vector<float> latent(static_cast<size_t>(context) * entry);  // [context, entry]
  if (args.cache_fp8) {
    for (int j = 0; j < context; ++j) {
      read_kv(args.cache, true, paged_slot(args.block_table, args.block_size, j), entry, 0, entry,
              &latent[size_t(j) * entry]);
    }
  } else {
    kv_gather(ctx, kv, std::span<const int32_t>(args.block_table, kv.num_blocks), context,
              TensorView{latent.data(), DType::kF32, Shape{context, entry}});
  }
  if (args.cache_scale != 1.0f) {
    for (float& value : latent) value *= args.cache_scale;
  }
  std::vector<float> c(static_cast<size_t>(context) * d.rank);  // latent[:, :r], dense
  for (int j = 0; j < context; ++j)
    std::memcpy(&c[size_t(j) * d.rank], &latent[size_t(j) * entry], d.rank * sizeof(float));
  std::vector<float> kv_rows(static_cast<size_t>(context) * heads * (d.nope + d.value));
  linear(ctx, TensorView{c.data(), DType::kF32, Shape{context, d.rank}},
         TensorView{const_cast<float*>(args.kv_b), DType::kF32, Shape{heads * (d.nope + d.value), d.rank}},
         TensorView{}, TensorView{kv_rows.data(), DType::kF32, Shape{context, heads * (d.nope + d.value)}});
  std::vector<float> k(static_cast<size_t>(context) * heads * qk), v(static_cast<size_t>(context) * heads * d.value);
  for (int j = 0; j < context; ++j) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* kv_head = &kv_rows[(size_t(j) * heads + h) * (d.nope + d.value)];
      float* k_head = &k[(size_t(j) * heads + h) * qk];
      std::memcpy(k_head, kv_head, d.nope * sizeof(float));
      std::memcpy(k_head + d.nope, &latent[size_t(j) * entry + d.rank], d.rope * sizeof(float));
      std::memcpy(&v[(size_t(j) * heads + h) * d.value], kv_head + d.nope, d.value * sizeof(float));
    }
  }
  attention_dense(ctx,
                  TensorView{const_cast<float*>(args.q) + int64_t(args.first_row) * heads * qk, DType::kF32,
                             Shape{args.count, heads, qk}},
                  TensorView{k.data(), DType::kF32, Shape{context, heads, qk}},
                  TensorView{v.data(), DType::kF32, Shape{context, heads, d.value}}, args.scale,
                  TensorView{args.out + int64_t(args.first_row) * heads * d.value, DType::kF32,
                             Shape{args.count, heads, d.value}});
}

}  // namespace moeserve::ops
