#include "runtime/mp/worker_spec.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/spawn_self.h"

namespace moeserve::mp {

Json load_options_json(const LoadOptions& load) {
  return Json{{"hf_overrides", load.hf_overrides},
              {"load_format", static_cast<int>(load.load_format)},
              {"dtype", static_cast<int>(load.dtype)},
              {"seed", load.seed},
              {"quantize_fp8", load.quantize_fp8},
              {"kv_cache_fp8", load.kv_cache_fp8},
              {"mla_mode", static_cast<int>(load.model.mla_mode)},
              {"precision_quantize_fp8", load.model.precision.quantize_fp8},
              {"precision_f32", static_cast<int>(load.model.precision.f32)},
              {"fp8_activations", load.model.fp8_activations},
              {"model_kv_cache_fp8", load.model.kv_cache_fp8}};
}

LoadOptions load_options_from(const Json& j) {
  LoadOptions load;
  load.hf_overrides = j.at("hf_overrides");
  load.load_format = static_cast<LoadFormat>(j.at("load_format").get<int>());
  load.dtype = static_cast<ActivationDType>(j.at("dtype").get<int>());
  load.seed = j.at("seed").get<uint64_t>();
  load.quantize_fp8 = j.at("quantize_fp8").get<bool>();
  load.kv_cache_fp8 = j.at("kv_cache_fp8").get<bool>();
  load.model.mla_mode = static_cast<MlaMode>(j.at("mla_mode").get<int>());
  load.model.precision.quantize_fp8 = j.at("precision_quantize_fp8").get<bool>();
  load.model.precision.f32 = static_cast<WeightPrecision::Float32>(j.at("precision_f32").get<int>());
  load.model.fp8_activations = j.at("fp8_activations").get<bool>();
  load.model.kv_cache_fp8 = j.at("model_kv_cache_fp8").get<bool>();
  return load;
}

Json parallel_json(const ParallelConfig& p) {
  return Json{{"tp", p.tensor_parallel_size},
              {"dp", p.data_parallel_size},
              {"ep", p.enable_expert_parallel},
              {"all2all", static_cast<int>(p.all2all)},
              {"placement", static_cast<int>(p.placement)},
              {"redundant", p.num_redundant_experts},
              {"threads_per_rank", p.threads_per_rank}};
}

ParallelConfig parallel_from(const Json& j) {
  ParallelConfig p;
  p.tensor_parallel_size = j.at("tp").get<int>();
  p.data_parallel_size = j.at("dp").get<int>();
  p.enable_expert_parallel = j.at("ep").get<bool>();
  p.all2all = static_cast<All2AllBackend>(j.at("all2all").get<int>());
  p.placement = static_cast<ExpertPlacement>(j.at("placement").get<int>());
  p.num_redundant_experts = j.at("redundant").get<int>();
  p.threads_per_rank = j.at("threads_per_rank").get<int>();
  p.executor = DistributedExecutor::kMp;
  return p;
}

Result<pid_t> spawn_worker(const Json& spec) {
  // The worker dies with the process that started it, even when that one is killed.
  return spawn_self("_worker", spec.dump(), SIGKILL, "--distributed-executor-backend mp");
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "stopped";
}

}  // namespace moeserve::mp
