// Engine flags shared by the commands that load a model (logits, generate, serve, bench), with
// vLLM's names and meanings: --dtype, --load-format, --hf-overrides, --seed, --device and the
// parallel ones. Parsed into runtime/make_runner's RunnerSpec, which decides the backend and the
// layout; unsupported values are refused by name.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "runtime/loaded_model.h"
#include "runtime/make_runner.h"
#include "runtime/parallel_config.h"

namespace moeserve::cli {

struct EngineFlags {
  std::string model_dir;  // after parsing: a directory (a hub id resolved through the HF cache)
  std::string model_id;   // MODEL as given (the default served model name)
  std::string revision = "main";  // of a hub id
  std::string download_dir;       // the HF cache to look in instead of the default
  std::string dtype = "auto";
  std::string load_format = "auto";
  std::string quantization;  // --quantization/-q: empty (the checkpoint's own) or fp8
  std::string kv_cache_dtype = "auto";  // --kv-cache-dtype: auto, fp8 or fp8_e4m3
  std::string hf_overrides = "{}";
  uint64_t seed = 0;
  std::string device = "auto";  // auto: cuda when this build has CUDA and a GPU is visible
                                // (runtime/make_runner.h: choose_backend)
  int threads = 0;
  std::string log_level;  // --log-level; empty: VLLM_LOGGING_LEVEL, else info (cli/log_level.h)
  // Parallelism (vLLM's names): one process, one worker thread per rank on the CPU backend.
  int tensor_parallel_size = 1;
  int data_parallel_size = 1;
  bool enable_expert_parallel = false;
  std::string all2all_backend = "allgather_reducescatter";
  std::string distributed_executor_backend;  // empty: mp for a deployment over several nodes, else threads
  std::string expert_placement_strategy = "linear";
  bool enable_eplb = false;
  std::string eplb_config = "{}";
  MultiNodeConfig nodes;  // serve's multi-node flags (cli/multi_node_flags.h); elsewhere every replica is local

  // Registers the positional MODEL_DIR and the flags above on `command` (the parallel ones only
  // for the commands that implement them; elsewhere they stay unknown arguments). The log level
  // is set as soon as `command`'s arguments are parsed, before its callback runs.
  void add_to(CLI::App& command, bool with_parallel = false);
  Result<LoadOptions> load_options() const;
  // The parallel layout; each of this node's ranks gets --threads / its ranks threads (at least one).
  Result<ParallelConfig> parallel_config() const;
  // Everything make_runner needs from these flags, with config.json (and --hf-overrides) read
  // here: the one parse of it per start-up, which the caller then uses for everything else.
  Result<RunnerSpec> runner_spec() const;
};

// vLLM's multi-letter short flags (-tp, -dp, -dpl, -dpr, -dpa, -dpp), which CLI11 cannot declare,
// rewritten to their long names ("-tp 2" and "-tp=2"); every other argument unchanged.
std::vector<std::string> expand_vllm_short_flags(int argc, char** argv);

// Parses "1,2,3" into token ids.
Result<std::vector<int32_t>> parse_id_list(const std::string& text);

}  // namespace moeserve::cli
