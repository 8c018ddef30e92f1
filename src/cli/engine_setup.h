// Building a serving engine from the command line (serve, bench throughput): config.json with
// --hf-overrides, generation_config.json, the memory model's start-up check before any weight is
// loaded, the model, its runner, the startup summary log, and the Engine (not yet started).
#pragma once

#include <memory>

#include "cli/engine_flags.h"
#include "cli/serve_flags.h"
#include "engine/engine.h"
#include "server/generation_config.h"

namespace moeserve::cli {

struct EngineSetup {
  std::unique_ptr<Engine> engine;
  GenerationConfig generation;
};

// Errors are the user's: a bad config, a deployment that does not fit (with the fix), a corrupt
// checkpoint, a missing tokenizer.
Result<EngineSetup> create_engine(const EngineFlags& flags, const SchedulingFlags& scheduling);

}  // namespace moeserve::cli
