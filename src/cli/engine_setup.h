// Building a serving engine from the command line (serve, bench throughput): config.json with
// --hf-overrides (read once), generation_config.json, the tokenizer, the runners from
// runtime/make_runner (backend and layout choice, the memory model's start-up check before any
// weight is loaded), the startup summary log, and the Engine(s) (not yet started).
#pragma once

#include <memory>

#include "cli/engine_flags.h"
#include "cli/serve_flags.h"
#include "engine/dp_coordinator.h"
#include "engine/engine.h"
#include "runtime/rank_group.h"
#include "server/generation_config.h"

namespace moeserve::cli {

struct EngineSetup {
  std::unique_ptr<Engine> engine;                 // one replica (also with TP or EP over its ranks)
  std::unique_ptr<DpCoordinator> data_parallel;  // instead, with --data-parallel-size > 1
  std::shared_ptr<RankGroup> rank_group;          // the ranks behind them, with parallel flags
  GenerationConfig generation;
  // What was deployed, for the live page's deployment panel (the startup log says the same).
  BackendChoice backend;
  std::string layout;  // EngineRunners::layout
  std::string plan;    // EngineRunners::plan
  EngineConfig engine_config;
  int num_kv_blocks = 0;  // per DP replica
  int block_size = 0;

  EngineClient& client() { return data_parallel ? static_cast<EngineClient&>(*data_parallel) : *engine; }
  void set_metrics(EngineMetrics* metrics) {
    if (engine) engine->set_metrics(metrics);
    if (data_parallel) {
      for (int dp_rank = 0; dp_rank < data_parallel->num_replicas(); ++dp_rank) {
        data_parallel->replica(dp_rank).set_metrics(metrics);
      }
    }
  }
  void start() { data_parallel ? data_parallel->start() : engine->start(); }
  void stop() { data_parallel ? data_parallel->stop() : engine->stop(); }
};

// Errors are the user's: a bad config, a deployment that does not fit (with the fix), a corrupt
// checkpoint, a missing tokenizer.
Result<EngineSetup> create_engine(const EngineFlags& flags, const SchedulingFlags& scheduling);

}  // namespace moeserve::cli
