#include "runtime/parallel_config.h"

#include <nlohmann/json.hpp>

namespace moeserve {

namespace {

Result<int> positive_int(const nlohmann::json& value, const char* field, int minimum) {
  if (!value.is_number_integer() || value.get<int64_t>() < minimum) {
    return make_error("--eplb-config field '{}' must be an integer ≥ {}, got {}", field, minimum, value.dump());
  }
  return value.get<int>();
}

Result<bool> boolean(const nlohmann::json& value, const char* field) {
  if (!value.is_boolean())
    return make_error("--eplb-config field '{}' must be true or false, got {}", field, value.dump());
  return value.get<bool>();
}

}  // namespace

Result<EplbConfig> parse_eplb_config(const std::string& json_text, bool enabled) {
  const nlohmann::json json = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return make_error("--eplb-config must be a JSON object, got '{}'", json_text);
  }
  EplbConfig config;
  config.enabled = enabled;
  for (const auto& [field, value] : json.items()) {
    if (field == "window_size") {
      MS_ASSIGN_OR_RETURN(config.window_size, positive_int(value, "window_size", 1));
    } else if (field == "step_interval") {
      MS_ASSIGN_OR_RETURN(config.step_interval, positive_int(value, "step_interval", 1));
    } else if (field == "num_redundant_experts") {
      MS_ASSIGN_OR_RETURN(config.num_redundant_experts, positive_int(value, "num_redundant_experts", 0));
    } else if (field == "log_balancedness") {
      MS_ASSIGN_OR_RETURN(config.log_balancedness, boolean(value, "log_balancedness"));
    } else if (field == "log_balancedness_interval") {
      MS_ASSIGN_OR_RETURN(config.log_balancedness_interval, positive_int(value, "log_balancedness_interval", 1));
    } else if (field == "use_async") {
      MS_RETURN_IF_ERROR(boolean(value, "use_async"));  // rearrangement always runs between steps here
    } else if (field == "policy") {
      if (value != "default")
        return make_error("--eplb-config policy {} is not supported (supported: default)", value.dump());
    } else if (field == "communicator") {
      if (!value.is_null() && !value.is_string()) return make_error("--eplb-config communicator must be a string");
    } else {
      return make_error(
          "--eplb-config has no field '{}' (fields: window_size, step_interval, num_redundant_experts, "
          "log_balancedness, log_balancedness_interval, use_async, policy, communicator)",
          field);
    }
  }
  return config;
}

Result<DistributedExecutor> parse_distributed_executor(const std::string& name) {
  if (name == "mp") return DistributedExecutor::kMp;
  if (name == "uni") return DistributedExecutor::kUni;
  if (name == "threads") return DistributedExecutor::kThreads;
  if (name == "ray" || name == "external_launcher") {
    return make_error("--distributed-executor-backend {}: not supported by moeserve (it runs its ranks as processes "
                      "it starts itself: mp, or as threads of one process: threads; uni for one rank)",
                      name);
  }
  return make_error("--distributed-executor-backend {} is not a backend (mp, uni or threads)", name);
}

Status ParallelConfig::validate() const {
  if (tensor_parallel_size < 1)
    return make_error("--tensor-parallel-size must be at least 1, got {}", tensor_parallel_size);
  if (data_parallel_size < 1) return make_error("--data-parallel-size must be at least 1, got {}", data_parallel_size);
  if (eplb.enabled && !enable_expert_parallel) return make_error("--enable-eplb requires --enable-expert-parallel");
  if (eplb.enabled && world_size() == 1) {
    return make_error("--enable-eplb requires more than one rank (tensor-parallel size × data-parallel size > 1)");
  }
  if (num_redundant_experts > 0 && !eplb.enabled) {
    return make_error("num_redundant_experts ({}) is only allowed with --enable-eplb", num_redundant_experts);
  }
  if (executor == DistributedExecutor::kUni && world_size() > 1) {
    return make_error("--distributed-executor-backend uni runs one rank in one process; {} ranks need mp or threads",
                      world_size());
  }
  return nodes.validate(data_parallel_size, executor);
}

}  // namespace moeserve
