// The log level of the commands that load a model: --log-level, else the environment variable
// VLLM_LOGGING_LEVEL (as vLLM reads it), else info. Level names as vLLM's (Python logging's):
// debug, info, warning, error, critical, in any case (DEBUG, Warning, ...); WARN is warning.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <spdlog/common.h>

#include "base/result.h"

namespace moeserve::cli {

inline constexpr const char* kLogLevelEnv = "VLLM_LOGGING_LEVEL";

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// `flag`: --log-level's value ("" when not given); `env`: VLLM_LOGGING_LEVEL (null when unset).
// An unknown name is an error that says where it came from.
Result<spdlog::level::level_enum> resolve_log_level(const std::string& flag, const char* env);

// --log-level's check: one of the names above.
CLI::Validator log_level_name();

}  // namespace moeserve::cli
