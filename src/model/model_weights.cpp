// load_model_weights: this rank's part of every tensor of the weight plan (model/weight_plan.h,
// each entry's sharding over the TP partition) converted to bf16 and written once into a
// backend's WeightMemory; each packing group (q/k/v, gate/up, the experts' gate/up) stacked side
// by side so it is one GEMM; kv_b and the selection bias float32. Linear weights of an fp8
// checkpoint (e4m3 + `<name>_scale_inv` per block) stay fp8 on a backend that holds fp8, their
// scales expanded per row (ops::Fp8Scales), and are dequantized exactly elsewhere; with
// WeightPrecision::quantize_fp8 bf16 weights are quantized to fp8 blocks as they load. F32
// tensors stay float32 on a backend that holds float32 when WeightPrecision::keeps_f32 says so
// (a float32 checkpoint under --dtype auto or float32), and are rounded to bf16 elsewhere.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <optional>
#include <vector>

#include "loader/kv_cache_scales.h"
#include "model/rope.h"
#include "model/sharded_weights.h"
#include "model/step_model.h"
#include "model/weight_plan.h"

namespace moeserve {

namespace {

class Loader {
 public:
  Loader(const ModelConfig& config, const WeightPlan& plan, const ShardedWeights* weights, const ShardSpec& shard,
         WeightMemory& memory, uint64_t seed, const WeightPrecision& precision)
      : config_(config),
        plan_(plan),
        weights_(weights),
        seed_(seed),
        tp_(shard.tp),
        experts_(shard.expert_parallel ? Partition{} : shard.tp),
        memory_(memory),
        quantize_fp8_(precision.quantize_fp8 && memory.holds_fp8()),
        keep_f32_(memory.holds_f32() && precision.keeps_f32(config.dtype)),
        fp8_block_(config.fp8_block_size && (*config.fp8_block_size)[0] > 0 ? *config.fp8_block_size
                                                                            : std::array<int, 2>{128, 128}) {}

  template <typename T>
  Result<T*> alloc(int64_t count) {
    MS_ASSIGN_OR_RETURN(void* ptr, memory_.allocate(static_cast<size_t>(count) * sizeof(T)));
    return static_cast<T*>(ptr);
  }

  // This rank's part of a tensor as the checkpoint stores it; an e4m3 part with its block scales
  // expanded per row (scales [rows, ceil((scale_offset + cols) / fp8_block_[1])], see
  // ops::Fp8Scales).
  struct Part {
    TensorView view;
    std::vector<float> scales;
    int scale_offset = 0;  // e4m3: column 0's place in its scale block (0 when quantized here)
    int row_phase = 0;     // e4m3: row 0's place in its scale block (0 when quantized here)
  };

  // This rank's part of tensor `expert` of the entry: its sharding over the TP partition (KV
  // heads by vLLM's replication rule: with fewer KV heads than ranks, rank r uses head
  // r / (tp / num_kv_heads)).
  // Experts (routed and shared) split over experts_: the TP partition, or whole with EP.
  // Without weights (dummy): a view with no data, of the shape of the rank's part.
  Result<Part> part(const WeightEntry& entry, int expert = 0) const {
    Part part;
    const bool expert_tensor = entry.component == Component::kRoutedExperts || entry.component == Component::kSharedExperts;
    if (weights_ == nullptr) {
      part.view = TensorView{nullptr, DType::kBF16, dummy_part_shape(entry, expert_tensor ? experts_ : tp_)};
      return part;
    }
    ShardRegion region;
    if (entry.sharding != Sharding::kKvHeads) {
      MS_ASSIGN_OR_RETURN(part.view,
                          weights_->shard(entry.role, entry.layer, expert_tensor ? experts_ : tp_, expert, &region));
    } else {
      const int64_t heads = local_kv_heads(config_, tp_);
      const int64_t first = config_.num_kv_heads >= tp_.size ? static_cast<int64_t>(tp_.rank) * heads
                                                             : tp_.rank / (tp_.size / config_.num_kv_heads);
      MS_ASSIGN_OR_RETURN(part.view, weights_->rows(entry.role, entry.layer, first * config_.head_dim,
                                                    heads * config_.head_dim, &region));
    }
    if (part.view.dtype == DType::kF8E4M3) MS_RETURN_IF_ERROR(read_scales(entry, expert, region, part));
    return part;
  }

  // part.scales ← the checkpoint's block scales of an e4m3 tensor, over the part's region.
  Status read_scales(const WeightEntry& entry, int expert, const ShardRegion& region, Part& part) const {
    const std::string name = entry.tensor_name(expert);
    if (!entry.quantizable) {
      return make_error("tensor '{}' is F8_E4M3, but only the Linear weights of an fp8 checkpoint may be "
                        "(embeddings, norms, the router and lm_head stay unquantized)",
                        name);
    }
    if (!config_.fp8_block_size) {
      return make_error("tensor '{}' is F8_E4M3, but config.json has no fp8 quantization_config (its "
                        "weight_block_size says how the tensor's scales apply)",
                        name);
    }
    if ((*config_.fp8_block_size)[0] == 0) {
      return make_error("tensor '{}': per-tensor fp8 scales (a quantization_config without weight_block_size) are "
                        "not supported; block-scaled fp8 checkpoints (weight_block_size [128, 128]) are",
                        name);
    }
    const auto [block_rows, block_cols] = fp8_block_;
    MS_ASSIGN_OR_RETURN(TensorView grid, weights_->scale_inv(entry.role, entry.layer, expert, fp8_block_));
    std::vector<float> grid_f32(static_cast<size_t>(grid.numel()));  // [ceil(R / B0), ceil(C / B1)]
    convert_to_f32(grid.dtype, grid.data, grid_f32.data(), grid_f32.size());
    // The part's column c scales by block (col0 + c) / B1 of the whole.
    part.scale_offset = static_cast<int>(region.col0 % block_cols);
    part.row_phase = static_cast<int>(region.row0 % block_rows);
    const int64_t scale_cols = (part.scale_offset + region.cols + block_cols - 1) / block_cols;
    part.scales.resize(static_cast<size_t>(region.rows * scale_cols));
    for (int64_t r = 0; r < region.rows; ++r) {
      const float* grid_row = grid_f32.data() + (region.row0 + r) / block_rows * grid.dim(1) + region.col0 / block_cols;
      std::copy(grid_row, grid_row + scale_cols, part.scales.begin() + r * scale_cols);
    }
    return ok_status();
  }

  // The part as float32 (an e4m3 part dequantized: fp8 · scale, as transformers does).
  std::vector<float> to_f32(const Part& part) const {
    std::vector<float> f32(static_cast<size_t>(part.view.numel()));
    convert_to_f32(part.view.dtype, part.view.data, f32.data(), f32.size());
    if (part.view.dtype == DType::kF8E4M3) {
      const int64_t rows = part.view.dim(0), cols = part.view.dim(1);
      const int block = fp8_block_[1];
      const int64_t scale_cols = (part.scale_offset + cols + block - 1) / block;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          f32[r * cols + c] *= part.scales[r * scale_cols + (c + part.scale_offset) / block];
        }
      }
    }
    return f32;
  }

  // How parts stored together (one tensor, a stacked group, a bias) are held when not fp8:
  // float32 where one of them is F32 and the loader keeps float32 (bf16 parts widen exactly),
  // else bf16.
  DType stored_dtype(const std::vector<Part>& parts) const {
    for (const Part& p : parts) {
      if (keep_f32_ && p.view.data != nullptr && p.view.dtype == DType::kF32) return DType::kF32;
    }
    return DType::kBF16;
  }

  // dst [part's shape] ← the part as `dtype` (kBF16 or kF32; a part with no data: random weights
  // from the backend, normal(0, 0.02) from a hash of the name, norms 1.0).
  Status fill(void* dst, DType dtype, const Part& part, const WeightEntry& entry, int expert = 0) {
    const TensorView& view = part.view;
    const int64_t numel = view.numel();
    if (view.data == nullptr) return fill_random(dst, dtype, numel, entry, expert);
    if (dtype == DType::kF32) {
      const std::vector<float> f32 = to_f32(part);
      memory_.write(dst, f32.data(), f32.size() * sizeof(float));
      return ok_status();
    }
    staging_.resize(static_cast<size_t>(numel));
    if (view.dtype == DType::kBF16) {
      std::memcpy(staging_.data(), view.data, view.nbytes());
    } else {
      const std::vector<float> f32 = to_f32(part);
      for (size_t i = 0; i < f32.size(); ++i) staging_[i] = f32_to_bf16(f32[i]);
    }
    memory_.write(dst, staging_.data(), staging_.size() * sizeof(uint16_t));
    return ok_status();
  }

  // dst [rows, cols] e4m3 and dst_scales [rows, ceil(cols / fp8_block_[1])] ← the part: copied
  // when the checkpoint stores it as e4m3, else quantized in fp8_block_ blocks (scale amax / 448);
  // a part with no data: random codes of |value| < 2 at scale 2^-5 (about normal(0, 0.02)'s range).
  Status fill_fp8(uint8_t* dst, float* dst_scales, const Part& part, const WeightEntry& entry, int expert) {
    const int64_t rows = part.view.dim(0), cols = part.view.dim(1);
    if (part.view.dtype == DType::kF8E4M3) {
      memory_.write(dst, part.view.data, part.view.nbytes());
      memory_.write(dst_scales, part.scales.data(), part.scales.size() * sizeof(float));
      return ok_status();
    }
    const auto [block_rows, block_cols] = fp8_block_;
    const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
    if (part.view.data == nullptr) {
      MS_RETURN_IF_ERROR(fill_random(dst, DType::kF8E4M3, rows * cols, entry, expert));
      return memory_.fill_random(dst_scales, DType::kF32, rows * scale_cols, 0, 0.0f, 1.0f / 32);
    }
    const std::vector<float> f32 = to_f32(part);
    std::vector<uint8_t> bits(f32.size());
    std::vector<float> scales(static_cast<size_t>(rows * scale_cols));
    for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
      const int64_t r1 = std::min(rows, r0 + block_rows);
      for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
        const int64_t c1 = std::min(cols, c0 + block_cols);
        float amax = 0.0f;
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(f32[r * cols + c]));
        }
        const float scale = amax > 0.0f ? amax / kF8E4M3Max : 1.0f;
        for (int64_t r = r0; r < r1; ++r) {
          scales[r * scale_cols + c0 / block_cols] = scale;
          for (int64_t c = c0; c < c1; ++c) bits[r * cols + c] = f32_to_f8e4m3(f32[r * cols + c] / scale);
        }
      }
    }
    memory_.write(dst, bits.data(), bits.size());
    memory_.write(dst_scales, scales.data(), scales.size() * sizeof(float));
    return ok_status();
  }

  // The shape of the rank's part of entry (ShardedWeights::shard's, and rows() for KV heads),
  // for random weights.
  Shape dummy_part_shape(const WeightEntry& entry, const Partition& p) const {
    const int64_t rows = entry.rows(), cols = entry.cols();
    const auto shaped = [&](int64_t r, int64_t c) { return entry.shape.rank() == 2 ? Shape{r, c} : Shape{r}; };
    switch (entry.sharding) {
      case Sharding::kReplicated:
      case Sharding::kVocab:
        return entry.shape;
      case Sharding::kColumn:
      case Sharding::kExpertColumn:
        return shaped(rows / p.size, cols);
      case Sharding::kRow:
      case Sharding::kExpertRow:
        return shaped(rows, cols / p.size);
      case Sharding::kKvHeads:
        return shaped(int64_t(local_kv_heads(config_, tp_)) * config_.head_dim, cols);
    }
    return entry.shape;
  }

  Status fill_random(void* dst, DType dtype, int64_t numel, const WeightEntry& entry, int expert) {
    const bool is_norm = entry.component == Component::kNorm;
    // A fused expert tensor names every expert (and gate and up) alike: the role and expert too.
    const uint64_t fused = entry.fused() ? (uint64_t(expert) + 1) * 0x9E3779B97F4A7C15ull + uint64_t(entry.role) : 0;
    return memory_.fill_random(dst, dtype, numel,
                               seed_ ^ std::hash<std::string>{}(entry.tensor_name(expert)) ^ fused,
                               is_norm ? 0.0f : 0.02f, 1.0f);
  }

  Result<WeightVector> tensor(const WeightEntry& entry) {
    std::vector<Part> whole(1);
    MS_ASSIGN_OR_RETURN(whole[0], part(entry));
    WeightVector tensor{.dtype = stored_dtype(whole)};
    MS_ASSIGN_OR_RETURN(void* ptr, memory_.allocate(whole[0].view.numel() * dtype_size(tensor.dtype)));
    MS_RETURN_IF_ERROR(fill(ptr, tensor.dtype, whole[0], entry));
    tensor.data = ptr;
    return tensor;
  }
  // The tensor of `role` in `layer`, or null when this config has none.
  Result<WeightVector> tensor_if_present(WeightRole role, int layer) {
    const WeightEntry* entry = plan_.find(role, layer);
    if (entry == nullptr) return WeightVector{};
    return tensor(*entry);
  }

  // A float32 copy (the MLA absorption matrix, the router's selection bias).
  Result<const float*> tensor_f32(const WeightEntry& entry) {
    MS_ASSIGN_OR_RETURN(Part whole, part(entry));
    const int64_t numel = whole.view.numel();
    MS_ASSIGN_OR_RETURN(float* ptr, alloc<float>(numel));
    if (whole.view.data == nullptr) {
      MS_RETURN_IF_ERROR(fill_random(ptr, DType::kF32, numel, entry, 0));
      return ptr;
    }
    const std::vector<float> f32 = to_f32(whole);
    memory_.write(ptr, f32.data(), f32.size() * sizeof(float));
    return ptr;
  }

  // Whether parts (of `entries`) stacked into one matrix are stored as fp8: the backend holds fp8
  // and each part is e4m3 in the checkpoint or quantized as it loads (at offset 0), all at one
  // scale offset.
  bool stores_fp8(const std::vector<const WeightEntry*>& entries, const std::vector<Part>& parts) const {
    if (!memory_.holds_fp8()) return false;
    for (size_t i = 0; i < parts.size(); ++i) {
      const bool fp8 = parts[i].view.dtype == DType::kF8E4M3;
      const bool quantized = !fp8 && quantize_fp8_ && entries[i]->quantizable;
      if ((!fp8 && !quantized) || parts[i].scale_offset != parts[0].scale_offset) return false;
    }
    return true;
  }

  // The parts of `entries` (tensor `expert` of each) and the [Σ rows_i, in] matrix they stack into
  // (weight and scales unset).
  Result<Projection> stack_shape(const std::vector<const WeightEntry*>& entries, int expert, std::vector<Part>& parts) {
    parts.clear();
    for (const WeightEntry* entry : entries) {
      MS_ASSIGN_OR_RETURN(Part next, part(*entry, expert));
      parts.push_back(std::move(next));
    }
    const int64_t in = parts.front().view.dim(1);
    int64_t total = 0;
    for (const Part& p : parts) {
      MS_CHECK(p.view.dim(1) == in);
      total += p.view.dim(0);
    }
    Projection shape{.out = static_cast<int>(total), .in = static_cast<int>(in), .dtype = stored_dtype(parts)};
    if (stores_fp8(entries, parts)) {
      shape.dtype = DType::kF8E4M3;
      shape.scale_block = fp8_block_[1];
      shape.scale_offset = parts[0].scale_offset;
      // Quantized here or read, each part's scale blocks start at its row_phase; stacked, at
      // its first row.
      shape.scale_row_blocks = fp8_block_[0] == 128;
      int64_t first_row = 0;
      for (const Part& p : parts) {
        if (first_row % 128 != 0 || p.row_phase != 0) shape.scale_row_blocks = false;
        first_row += p.view.dim(0);
      }
    }
    return shape;
  }

  // `count` matrices of `shape` back to back: weight (and scale) memory for them.
  Result<Projection> alloc_stack(Projection shape, int64_t count) {
    MS_ASSIGN_OR_RETURN(shape.weight, memory_.allocate(count * shape.weight_bytes()));
    if (shape.dtype == DType::kF8E4M3) {
      MS_ASSIGN_OR_RETURN(shape.scale, alloc<float>(count * shape.out * shape.scale_cols()));
    }
    if (shape.mxfp4()) {
      MS_ASSIGN_OR_RETURN(shape.mx_scale, alloc<uint8_t>(count * shape.scale_bytes()));
    }
    return shape;
  }

  // dst (one matrix of a stack) ← parts one after another.
  Status write_stack(const Projection& dst, const std::vector<Part>& parts,
                     const std::vector<const WeightEntry*>& entries, int expert) {
    int64_t row = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (dst.dtype == DType::kF8E4M3) {
        MS_RETURN_IF_ERROR(fill_fp8(const_cast<uint8_t*>(dst.fp8()) + row * dst.in,
                                    const_cast<float*>(dst.scale) + row * dst.scale_cols(), parts[i], *entries[i],
                                    expert));
      } else {
        char* rows = static_cast<char*>(const_cast<void*>(dst.weight)) + row * dst.in * dtype_size(dst.dtype);
        MS_RETURN_IF_ERROR(fill(rows, dst.dtype, parts[i], *entries[i], expert));
      }
      row += parts[i].view.dim(0);
    }
    MS_CHECK(row == dst.out);
    return ok_status();
  }

  // Whether a layer's routed experts (their gate and down entries) load as MXFP4: the config's
  // experts are MXFP4 (quantization_config mxfp4) and the checkpoint stores them so (random
  // weights: made so), the backend holds MXFP4, and each expert is whole on this rank.
  Result<bool> mxfp4_experts(const WeightEntry& gate, const WeightEntry& down) const {
    if (!config_.mxfp4_experts || !memory_.holds_mxfp4() || experts_.size != 1) return false;
    if (gate.cols() % Projection::kMxBlock != 0 || down.cols() % Projection::kMxBlock != 0) return false;
    if (weights_ == nullptr) return true;
    return weights_->has_mxfp4(gate);
  }

  // dst (one MXFP4 matrix of a stack) ← the entries' slices of `expert` one after another, as the
  // checkpoint stores them (random: uniform e2m1 codes at scale 2^-7, |w| <= 0.047).
  Status write_mxfp4(const Projection& dst, const std::vector<const WeightEntry*>& entries, int expert) {
    auto* blocks = const_cast<uint8_t*>(dst.mxfp4_blocks());
    auto* scales = const_cast<uint8_t*>(dst.mx_scale);
    const int64_t groups = dst.in / Projection::kMxBlock;
    int64_t row = 0;
    for (const WeightEntry* entry : entries) {
      const int64_t rows = entry->rows();
      if (weights_ == nullptr) {
        MS_RETURN_IF_ERROR(fill_random(blocks + row * dst.in / 2, DType::kU8, rows * dst.in / 2, *entry, expert));
        MS_RETURN_IF_ERROR(memory_.fill_random(scales + row * groups, DType::kU8, rows * groups, 0, 0.0f, 127 - 7));
      } else {
        MS_ASSIGN_OR_RETURN(const ShardedWeights::Mxfp4Rows stored, weights_->mxfp4_rows(*entry, expert));
        memory_.write(blocks + row * dst.in / 2, stored.blocks.data(), stored.blocks.size());
        memory_.write(scales + row * groups, stored.scales.data(), stored.scales.size());
      }
      row += rows;
    }
    MS_CHECK(row == dst.out);
    return ok_status();
  }

  // Several [rows_i, in] matrices (a packing group, or one tensor) stacked into one
  // [Σ rows_i, in] projection, with their biases stacked likewise when given.
  Result<Projection> stacked(const std::vector<const WeightEntry*>& weights,
                             const std::vector<const WeightEntry*>& biases = {}) {
    MS_CHECK(!weights.empty() && (biases.empty() || biases.size() == weights.size()));
    std::vector<Part> parts;  // [i]: weights[i]'s part
    MS_ASSIGN_OR_RETURN(Projection shape, stack_shape(weights, 0, parts));
    MS_ASSIGN_OR_RETURN(Projection linear, alloc_stack(shape, 1));
    MS_RETURN_IF_ERROR(write_stack(linear, parts, weights, 0));
    if (!biases.empty()) {
      std::vector<Part> bias_parts;
      for (const WeightEntry* entry : biases) {
        MS_ASSIGN_OR_RETURN(Part bias_part, part(*entry));
        bias_parts.push_back(std::move(bias_part));
      }
      const DType dtype = stored_dtype(bias_parts);
      MS_ASSIGN_OR_RETURN(void* bias, memory_.allocate(linear.out * dtype_size(dtype)));
      int64_t row = 0;
      for (size_t i = 0; i < biases.size(); ++i) {
        MS_RETURN_IF_ERROR(fill(static_cast<char*>(bias) + row * dtype_size(dtype), dtype, bias_parts[i], *biases[i]));
        row += bias_parts[i].view.numel();
      }
      MS_CHECK(row == linear.out);
      linear.bias = WeightVector{.data = bias, .dtype = dtype};
    }
    return linear;
  }

  // One projection: the weight of `role` in `layer`, with `bias_role`'s tensor when present (a
  // row-parallel projection's bias on rank 0 only: the all-reduce adds it once; float32 where the
  // plan keeps it so).
  Result<Projection> linear(WeightRole role, int layer, std::optional<WeightRole> bias_role = std::nullopt) {
    const WeightEntry& weight = plan_.get(role, layer);
    const WeightEntry* bias = bias_role ? plan_.find(*bias_role, layer) : nullptr;
    if (bias != nullptr && weight.sharding == Sharding::kRow && tp_.rank != 0) bias = nullptr;
    if (bias == nullptr) return stacked({&weight});
    if (!bias->keep_fp32) return stacked({&weight}, {bias});
    MS_ASSIGN_OR_RETURN(Projection linear, stacked({&weight}));
    MS_ASSIGN_OR_RETURN(const float* bias_f32, tensor_f32(*bias));
    linear.bias = WeightVector{.data = bias_f32, .dtype = DType::kF32};
    return linear;
  }

  // dst [Σ parts' elements] float32 ← tensor `expert` of each entry (this rank's part), one after
  // another (an expert's biases).
  Status write_f32(float* dst, const std::vector<const WeightEntry*>& entries, int expert) {
    for (const WeightEntry* entry : entries) {
      MS_ASSIGN_OR_RETURN(Part piece, part(*entry, expert));
      const int64_t numel = piece.view.numel();
      if (piece.view.data == nullptr) {
        MS_RETURN_IF_ERROR(fill_random(dst, DType::kF32, numel, *entry, expert));
      } else {
        const std::vector<float> f32 = to_f32(piece);
        memory_.write(dst, f32.data(), f32.size() * sizeof(float));
      }
      dst += numel;
    }
    return ok_status();
  }

  // A SwiGLU MLP: gate and up stacked ([2I, hidden]), down [hidden, I].
  Result<MlpWeights> mlp(const SwigluRoles& roles, PackGroup gate_up, int layer) {
    MlpWeights mlp;
    MS_ASSIGN_OR_RETURN(mlp.gate_up, stacked(plan_.packed(gate_up, layer)));
    mlp.intermediate = mlp.gate_up.out / 2;
    MS_ASSIGN_OR_RETURN(mlp.down, linear(roles.down, layer));
    return mlp;
  }

  Status gqa(int layer, GqaWeights& gqa) {
    MS_ASSIGN_OR_RETURN(gqa.qkv, stacked(plan_.packed(PackGroup::kQkv, layer), plan_.packed(PackGroup::kQkvBias, layer)));
    MS_ASSIGN_OR_RETURN(gqa.o, linear(WeightRole::kO, layer, WeightRole::kOBias));
    MS_ASSIGN_OR_RETURN(gqa.q_norm, tensor_if_present(WeightRole::kQNorm, layer));
    MS_ASSIGN_OR_RETURN(gqa.k_norm, tensor_if_present(WeightRole::kKNorm, layer));
    if (const WeightEntry* sinks = plan_.find(WeightRole::kAttnSinks, layer)) {
      MS_ASSIGN_OR_RETURN(gqa.sinks, tensor_f32(*sinks));
    }
    return ok_status();
  }

  Status mla(int layer, MlaWeights& mla) {
    if (plan_.find(WeightRole::kQA, layer) != nullptr) {
      MS_ASSIGN_OR_RETURN(mla.q_a, linear(WeightRole::kQA, layer));
      MS_ASSIGN_OR_RETURN(mla.q_a_norm, tensor(plan_.get(WeightRole::kQANorm, layer)));
      MS_ASSIGN_OR_RETURN(mla.q_b, linear(WeightRole::kQB, layer));
    } else {
      MS_ASSIGN_OR_RETURN(mla.q, linear(WeightRole::kQ, layer));
    }
    MS_ASSIGN_OR_RETURN(mla.kv_a, stacked(plan_.packed(PackGroup::kMlaKvA, layer)));
    MS_ASSIGN_OR_RETURN(mla.kv_a_norm, tensor(plan_.get(WeightRole::kKvANorm, layer)));
    MS_ASSIGN_OR_RETURN(mla.kv_b, tensor_f32(plan_.get(WeightRole::kKvB, layer)));
    MS_ASSIGN_OR_RETURN(mla.o, linear(WeightRole::kO, layer));
    if (plan_.find(WeightRole::kIndexerQB, layer) != nullptr) {
      MS_ASSIGN_OR_RETURN(mla.indexer_q, linear(WeightRole::kIndexerQB, layer));
      MS_ASSIGN_OR_RETURN(mla.indexer_k_norm, tensor_f32(plan_.get(WeightRole::kIndexerKNorm, layer)));
      MS_ASSIGN_OR_RETURN(mla.indexer_k_bias, tensor_f32(plan_.get(WeightRole::kIndexerKNormBias, layer)));
    }
    return ok_status();
  }

  Status moe(const MoeConfig& m, const ShardSpec& shard, int layer, MoeWeights& moe) {
    moe.router_params = router_params(m);
    moe.num_experts = m.num_experts;
    moe.glu = ops::GluParams{.clamped = m.clamped_swiglu, .alpha = m.swiglu_alpha, .limit = m.swiglu_limit};
    MS_ASSIGN_OR_RETURN(moe.router, linear(WeightRole::kRouter, layer, WeightRole::kRouterLogitBias));
    if (const WeightEntry* bias = plan_.find(WeightRole::kRouterBias, layer)) {
      MS_ASSIGN_OR_RETURN(moe.selection_bias, tensor_f32(*bias));
    }
    // Experts side by side: gate_up [E, 2I, hidden] (each expert's gate rows, then its up rows),
    // down [E, hidden, I].
    // Which experts: every one (each its TP slice: Ie / tp intermediate rows), or with EP the
    // logical experts of this rank's slots, whole.
    std::vector<int> slot_experts;
    if (shard.expert_parallel) {
      moe.map = std::make_shared<const ExpertMap>(
          ExpertMap::initial(m.num_experts, shard.num_redundant_experts, shard.ep.size, shard.placement));
      const int per_rank = moe.map->slots_per_rank();
      for (int slot = shard.ep.rank * per_rank; slot < (shard.ep.rank + 1) * per_rank; ++slot) {
        slot_experts.push_back(moe.map->phys2log[slot]);
      }
    } else {
      for (int expert = 0; expert < m.num_experts; ++expert) slot_experts.push_back(expert);
    }
    moe.num_slots = static_cast<int>(slot_experts.size());
    const std::vector<const WeightEntry*> gate_up_entries = plan_.packed(PackGroup::kExpertGateUp, layer);
    const std::vector<const WeightEntry*> down_entries = {&plan_.get(WeightRole::kExpertDown, layer)};
    moe.intermediate = m.expert_intermediate_size / experts_.size;
    // The experts' float32 biases (GPT-OSS), [S, 2 Ie] and [S, hidden]; the row-parallel down
    // projection's on one rank of the experts' TP split only.
    const std::vector<const WeightEntry*> gate_up_bias_entries = plan_.packed(PackGroup::kExpertGateUpBias, layer);
    std::vector<const WeightEntry*> down_bias_entries;
    const WeightEntry* down_bias = plan_.find(WeightRole::kExpertDownBias, layer);
    if (down_bias != nullptr && experts_.rank == 0) down_bias_entries.push_back(down_bias);
    MS_ASSIGN_OR_RETURN(const bool mxfp4, mxfp4_experts(*gate_up_entries.front(), *down_entries.front()));
    std::vector<Part> gate_up_parts, down_parts;  // one slot's
    for (int slot = 0; slot < moe.num_slots; ++slot) {
      const int expert = slot_experts[slot];
      const size_t copies = weights_ != nullptr ? weights_->copies_mark() : 0;
      if (mxfp4) {
        if (slot == 0) {
          const int hidden = config_.hidden_size;
          MS_ASSIGN_OR_RETURN(moe.experts_gate_up,
                              alloc_stack(Projection{.out = 2 * moe.intermediate, .in = hidden, .dtype = DType::kU8},
                                          moe.num_slots));
          MS_ASSIGN_OR_RETURN(
              moe.experts_down,
              alloc_stack(Projection{.out = hidden, .in = moe.intermediate, .dtype = DType::kU8}, moe.num_slots));
        }
        MS_RETURN_IF_ERROR(write_mxfp4(moe.experts_gate_up.stacked_at(slot), gate_up_entries, expert));
        MS_RETURN_IF_ERROR(write_mxfp4(moe.experts_down.stacked_at(slot), down_entries, expert));
      } else {
        MS_ASSIGN_OR_RETURN(Projection gate_up, stack_shape(gate_up_entries, expert, gate_up_parts));
        MS_ASSIGN_OR_RETURN(Projection down, stack_shape(down_entries, expert, down_parts));
        if (slot == 0) {
          MS_CHECK(gate_up.out == 2 * moe.intermediate && down.in == moe.intermediate);
          MS_ASSIGN_OR_RETURN(moe.experts_gate_up, alloc_stack(gate_up, moe.num_slots));
          MS_ASSIGN_OR_RETURN(moe.experts_down, alloc_stack(down, moe.num_slots));
        } else if (gate_up.dtype != moe.experts_gate_up.dtype || down.dtype != moe.experts_down.dtype) {
          return make_error("layer {}: expert {} is stored as {} but expert {} as {}; every expert of a layer must "
                            "share one dtype",
                            layer, expert, dtype_name(gate_up.dtype), slot_experts[0],
                            dtype_name(moe.experts_gate_up.dtype));
        }
        MS_RETURN_IF_ERROR(write_stack(moe.experts_gate_up.stacked_at(slot), gate_up_parts, gate_up_entries, expert));
        MS_RETURN_IF_ERROR(write_stack(moe.experts_down.stacked_at(slot), down_parts, down_entries, expert));
      }
      if (slot == 0 && !gate_up_bias_entries.empty()) {
        MS_ASSIGN_OR_RETURN(moe.experts_gate_up.bias.data,
                            alloc<float>(int64_t{moe.num_slots} * moe.experts_gate_up.out));
        moe.experts_gate_up.bias.dtype = DType::kF32;
      }
      if (slot == 0 && !down_bias_entries.empty()) {
        MS_ASSIGN_OR_RETURN(moe.experts_down.bias.data, alloc<float>(int64_t{moe.num_slots} * moe.experts_down.out));
        moe.experts_down.bias.dtype = DType::kF32;
      }
      if (moe.experts_gate_up.bias.present()) {
        const Projection at = moe.experts_gate_up.stacked_at(slot);
        MS_RETURN_IF_ERROR(write_f32(const_cast<float*>(at.bias.f32()), gate_up_bias_entries, expert));
      }
      if (moe.experts_down.bias.present()) {
        const Projection at = moe.experts_down.stacked_at(slot);
        MS_RETURN_IF_ERROR(write_f32(const_cast<float*>(at.bias.f32()), down_bias_entries, expert));
      }
      gate_up_parts.clear();
      down_parts.clear();
      if (weights_ != nullptr) weights_->release_copies(copies);  // the slot's slices and column blocks
    }
    if (plan_.find(WeightRole::kSharedGate, layer) != nullptr) {
      moe.has_shared = true;
      MS_ASSIGN_OR_RETURN(moe.shared, mlp(kSharedExpertRoles, PackGroup::kSharedGateUp, layer));
      if (plan_.find(WeightRole::kSharedExpertGate, layer) != nullptr) {
        MS_ASSIGN_OR_RETURN(moe.shared_gate, linear(WeightRole::kSharedExpertGate, layer));
      }
    }
    return ok_status();
  }

 private:
  const ModelConfig& config_;
  const WeightPlan& plan_;
  const ShardedWeights* weights_;  // null: random weights (dummy)
  uint64_t seed_;
  Partition tp_;
  Partition experts_;  // how routed and shared experts split: over TP, or whole with EP
  WeightMemory& memory_;
  bool quantize_fp8_;             // quantize the bf16/f32 Linear weights to fp8 as they load
  bool keep_f32_;                 // hold F32 tensors as float32 (else bf16)
  std::array<int, 2> fp8_block_;  // [rows, cols] of an fp8 scale block (the checkpoint's, or 128 × 128)
  std::vector<uint16_t> staging_;
};

Result<ModelWeights> load_weights(const ModelConfig& cfg, const WeightPlan& plan, const ShardedWeights* weights,
                                  const ShardSpec& shard, WeightMemory& memory, uint64_t seed,
                                  const WeightPrecision& precision);

}  // namespace

ops::RouterParams router_params(const MoeConfig& moe) {
  return ops::RouterParams{.top_k = moe.top_k,
                           .sigmoid = moe.scoring == RouterScoring::kSigmoid,
                           .num_groups = moe.selection == RouterSelection::kTopK ? 1 : moe.num_groups,
                           .topk_groups = moe.topk_groups,
                           .group_score_top2_sum = moe.selection == RouterSelection::kGroupLimitedTop2Sum,
                           .renormalize = moe.norm_topk_prob,
                           .scaling_factor = moe.routed_scaling_factor,
                           .softmax_after_topk = moe.scoring == RouterScoring::kTopKSoftmax};
}

Result<ModelWeights> load_model_weights(const ModelConfig& cfg, const ShardedWeights& weights, const ShardSpec& shard,
                                        WeightMemory& memory, const WeightPrecision& precision) {
  return load_weights(cfg, weights.plan(), &weights, shard, memory, 0, precision);
}

Result<ModelWeights> load_random_model_weights(const ModelConfig& cfg, const WeightPlan& plan, uint64_t seed,
                                               WeightMemory& memory, const ShardSpec& shard,
                                               const WeightPrecision& precision) {
  return load_weights(cfg, plan, nullptr, shard, memory, seed, precision);
}

namespace {

Result<ModelWeights> load_weights(const ModelConfig& cfg, const WeightPlan& plan, const ShardedWeights* weights,
                                  const ShardSpec& shard, WeightMemory& memory, uint64_t seed,
                                  const WeightPrecision& precision) {
  MS_RETURN_IF_ERROR(validate_shard_spec(cfg, shard));
  Loader up(cfg, plan, weights, shard, memory, seed, precision);
  ModelWeights w;
  MS_ASSIGN_OR_RETURN(w.embed, up.tensor(plan.get(WeightRole::kEmbedding)));
  MS_ASSIGN_OR_RETURN(w.final_norm, up.tensor(plan.get(WeightRole::kFinalNorm)));
  if (cfg.tie_word_embeddings) {
    w.lm_head =
        Projection{.weight = w.embed.data, .out = cfg.vocab_size, .in = cfg.hidden_size, .dtype = w.embed.dtype};
  } else {
    MS_ASSIGN_OR_RETURN(w.lm_head, up.linear(WeightRole::kLmHead, -1));
  }
  const RopeTable rope = build_rope_table(cfg.rope);
  MS_ASSIGN_OR_RETURN(float* inv_freq, up.alloc<float>(static_cast<int64_t>(rope.inv_freq.size())));
  memory.write(inv_freq, rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float));
  w.inv_freq = inv_freq;
  w.rope_half = static_cast<int>(rope.inv_freq.size());
  w.rope_attention_factor = rope.attention_factor;
  w.rope_interleaved = rope.interleaved;
  // Llama 4's L2 QK-norm: an RMSNorm of unit weight [head_dim] on its rope layers.
  const uint16_t* unit_norm = nullptr;
  if (cfg.qk_l2_norm) {
    MS_ASSIGN_OR_RETURN(uint16_t * ones, up.alloc<uint16_t>(cfg.head_dim));
    const std::vector<uint16_t> host(static_cast<size_t>(cfg.head_dim), f32_to_bf16(1.0f));
    memory.write(ones, host.data(), host.size() * sizeof(uint16_t));
    unit_norm = ones;
  }
  w.layers.resize(cfg.num_layers);
  for (int layer_idx = 0; layer_idx < cfg.num_layers; ++layer_idx) {
    LayerWeights& layer = w.layers[layer_idx];
    MS_ASSIGN_OR_RETURN(layer.input_norm, up.tensor(plan.get(WeightRole::kInputNorm, layer_idx)));
    MS_ASSIGN_OR_RETURN(layer.post_norm, up.tensor(plan.get(WeightRole::kPostAttentionNorm, layer_idx)));
    if (weights != nullptr) {  // the attention block's tensors are named <prefix>o_proj.weight
      const std::string& o_name = plan.get(WeightRole::kO, layer_idx).name;
      MS_ASSIGN_OR_RETURN(layer.kv_scales,
                          read_attention_kv_scales(weights->source(), o_name.substr(0, o_name.rfind("o_proj.weight"))));
    }
    if (cfg.is_mla()) {
      MS_RETURN_IF_ERROR(up.mla(layer_idx, layer.mla));
    } else {
      MS_RETURN_IF_ERROR(up.gqa(layer_idx, layer.gqa));
      if (unit_norm != nullptr && !cfg.is_nope(layer_idx)) {
        layer.gqa.q_norm = layer.gqa.k_norm = WeightVector{.data = unit_norm, .dtype = DType::kBF16};
      }
    }
    layer.is_moe = cfg.layer_is_moe[layer_idx];
    if (layer.is_moe) {
      MS_RETURN_IF_ERROR(up.moe(*cfg.moe, shard, layer_idx, layer.moe));
    } else {
      MS_ASSIGN_OR_RETURN(layer.mlp, up.mlp(kDenseMlpRoles, PackGroup::kMlpGateUp, layer_idx));
    }
  }
  return w;
}

}  // namespace

}  // namespace moeserve
