#include "model/parallel.h"

namespace moeserve {

Result<ExpertPlacement> parse_expert_placement(std::string_view name) {
  if (name == "linear") return ExpertPlacement::kLinear;
  if (name == "round_robin") return ExpertPlacement::kRoundRobin;
  return make_error(
      "--expert-placement-strategy '{}' is not supported "
      "(supported: linear, round_robin)",
      name);
}

Result<All2AllBackend> parse_all2all_backend(std::string_view name) {
  if (name == "allgather_reducescatter") return All2AllBackend::kAllgatherReducescatter;
  if (name == "nccl_alltoall") return All2AllBackend::kAlltoall;
  return make_error(
      "--all2all-backend '{}' is not supported (supported: "
      "allgather_reducescatter, nccl_alltoall; not implemented: "
      "deepep_high_throughput, deepep_low_latency, deepep_v2, "
      "mori_high_throughput, mori_low_latency, nixl_ep, "
      "flashinfer_nvlink_two_sided, flashinfer_nvlink_one_sided)",
      name);
}

const char* expert_placement_name(ExpertPlacement placement) {
  switch (placement) {
    case ExpertPlacement::kLinear:
      return "linear";
    case ExpertPlacement::kRoundRobin:
      return "round_robin";
  }
  return "linear";
}

const char* all2all_backend_name(All2AllBackend backend) {
  switch (backend) {
    case All2AllBackend::kAllgatherReducescatter:
      return "allgather_reducescatter";
    case All2AllBackend::kAlltoall:
      return "nccl_alltoall";
  }
  return "allgather_reducescatter";
}

int local_kv_heads(const ModelConfig& config, const Partition& tp) {
  return config.num_kv_heads >= tp.size ? config.num_kv_heads / tp.size : 1;
}

int kv_entry_size(const ModelConfig& config, const Partition& tp) {
  if (config.is_mla()) return config.mla->cache_entry();
  return 2 * local_kv_heads(config, tp) * config.head_dim;
}

namespace {

Status check_split(int64_t value, int parts, const char* what, const char* group) {
  if (value % parts != 0) {
    return make_error("{} ({}) is not divisible by the {} size {}", what, value, group, parts);
  }
  return ok_status();
}

}  // namespace

Status validate_shard_spec(const ModelConfig& config, const ShardSpec& spec) {
  const int tp = spec.tp.size;
  if (tp < 1 || spec.ep.size < 1) return make_error("parallel sizes must be at least 1");
  MS_RETURN_IF_ERROR(check_split(config.num_heads, tp, "the number of attention heads", "tensor-parallel"));
  if (!config.is_mla() && config.num_kv_heads < tp && tp % config.num_kv_heads != 0) {
    return make_error(
        "the tensor-parallel size {} is not a multiple of the "
        "number of KV heads ({}), so KV heads "
        "cannot be replicated evenly",
        tp, config.num_kv_heads);
  }
  if (!config.is_mla() && config.num_kv_heads >= tp) {
    MS_RETURN_IF_ERROR(check_split(config.num_kv_heads, tp, "the number of KV heads", "tensor-parallel"));
  }
  bool has_dense = false;
  for (int layer = 0; layer < config.num_layers; ++layer) has_dense = has_dense || !config.layer_is_moe[layer];
  if (has_dense) {
    MS_RETURN_IF_ERROR(check_split(config.intermediate_size, tp, "intermediate_size", "tensor-parallel"));
  }
  if (!config.moe) {
    if (spec.expert_parallel) return make_error("--enable-expert-parallel needs an MoE model");
    return ok_status();
  }
  const MoeConfig& moe = *config.moe;
  if (spec.num_redundant_experts < 0) return make_error("num_redundant_experts must be non-negative");
  if (!spec.expert_parallel) {
    if (spec.num_redundant_experts > 0) return make_error("redundant experts need --enable-expert-parallel");
    MS_RETURN_IF_ERROR(
        check_split(moe.expert_intermediate_size, tp, "the experts' intermediate size", "tensor-parallel"));
  } else {
    const int physical = moe.num_experts + spec.num_redundant_experts;
    if (physical % spec.ep.size != 0) {
      return make_error(
          "the number of experts ({}) plus redundant experts "
          "({}) is not divisible by the "
          "expert-parallel size {}",
          moe.num_experts, spec.num_redundant_experts, spec.ep.size);
    }
    if (spec.placement == ExpertPlacement::kRoundRobin && spec.num_redundant_experts > 0) {
      return make_error(
          "--expert-placement-strategy round_robin is only "
          "supported without redundant experts");
    }
  }
  if (moe.shared_intermediate_size > 0 && !spec.expert_parallel) {
    MS_RETURN_IF_ERROR(
        check_split(moe.shared_intermediate_size, tp, "the shared experts' intermediate size", "tensor-parallel"));
  }
  return ok_status();
}

}  // namespace moeserve
