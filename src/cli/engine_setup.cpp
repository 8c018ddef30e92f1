#include "cli/engine_setup.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "runtime/make_runner.h"

namespace moeserve::cli {

namespace {

// The engine's half of the startup summary (the runner's half, backend, model and layout, is
// make_runner's): the KV cache it schedules over (the bytes per token its ranks hold together)
// and the scheduler's limits.
void log_engine(const Runner& runner, int replicas, const EngineConfig& config) {
  spdlog::info("KV cache: {} blocks x {} tokens = {} tokens ({} B per token){}, max_model_len {}, max_num_seqs {}, "
               "max_num_batched_tokens {}, prefix caching {}",
               runner.num_kv_blocks(), runner.block_size(), int64_t{runner.num_kv_blocks()} * runner.block_size(),
               runner.kv_memory_bytes() / std::max<int64_t>(1, int64_t{runner.num_kv_blocks()} * runner.block_size()),
               replicas > 1 ? " per DP replica" : "",
               config.scheduler.max_model_len, config.scheduler.max_num_seqs, config.scheduler.max_num_batched_tokens,
               config.enable_prefix_caching ? "on" : "off");
}

}  // namespace

Result<EngineSetup> create_engine(const EngineFlags& flags, const SchedulingFlags& scheduling) {
  // config.json (with --hf-overrides) is read here once; everything below uses spec.config.
  MS_ASSIGN_OR_RETURN(const RunnerSpec spec, flags.runner_spec());
  const std::string& model_dir = spec.model_dir;
  EngineSetup setup;
  MS_ASSIGN_OR_RETURN(setup.generation, load_generation_config(scheduling.generation_config, model_dir, spec.config));
  MS_ASSIGN_OR_RETURN(EngineConfig config, scheduling.engine_config(spec.config));
  config.eos_token_ids = setup.generation.eos_token_ids;
  config.seed = flags.seed;

  // The tokenizer before any weight: a server without one cannot answer.
  const std::string tokenizer_dir = scheduling.tokenizer.empty() ? model_dir : scheduling.tokenizer;
  auto tokenizer = Tokenizer::from_dir(tokenizer_dir);
  if (!tokenizer.ok()) {
    return make_error("serving needs the model's tokenizer (or --tokenizer DIR): {}", tokenizer.error().message);
  }
  // Backend, layout, the start-up memory check and the runners: runtime/make_runner.
  MS_ASSIGN_OR_RETURN(EngineRunners runners,
                      make_engine_runners(spec, EngineSizing{.block_size = scheduling.block_size,
                                                             .max_model_len = config.scheduler.max_model_len,
                                                             .max_num_seqs = config.scheduler.max_num_seqs,
                                                             .max_num_batched_tokens =
                                                                 config.scheduler.max_num_batched_tokens,
                                                             .cpu_kv_cache_bytes = scheduling.kv_cache_bytes,
                                                             .gpu_memory_utilization =
                                                                 scheduling.gpu_memory_utilization,
                                                             .enforce_eager = scheduling.enforce_eager}));
  setup.backend = runners.backend;
  setup.layout = runners.layout;
  setup.plan = runners.plan;
  setup.engine_config = config;
  setup.num_kv_blocks = runners.replicas.front()->num_kv_blocks();
  setup.block_size = runners.replicas.front()->block_size();
  log_engine(*runners.replicas.front(), static_cast<int>(runners.replicas.size()), config);
  // One engine per DP replica (with TP or EP over its ranks); with more than one, a coordinator.
  std::vector<std::unique_ptr<Engine>> engines;
  for (auto& runner : runners.replicas) {
    MS_ASSIGN_OR_RETURN(auto engine, Engine::create(model_dir, std::move(runner), *tokenizer, config));
    engines.push_back(std::move(engine));
  }
  setup.rank_group = std::move(runners.rank_group);
  if (engines.size() == 1) {
    setup.engine = std::move(engines.front());
  } else {
    setup.data_parallel = std::make_unique<DpCoordinator>(std::move(engines));
  }
  return setup;
}

}  // namespace moeserve::cli
