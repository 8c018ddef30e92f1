#include "cli/log_level.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace moeserve::cli {
namespace {

constexpr const char* kNames = "debug, info, warning, error or critical";

}  // namespace

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "debug") return spdlog::level::debug;
  if (lower == "info") return spdlog::level::info;
  if (lower == "warning" || lower == "warn") return spdlog::level::warn;
  if (lower == "error") return spdlog::level::err;
  if (lower == "critical") return spdlog::level::critical;
  return std::nullopt;
}

Result<spdlog::level::level_enum> resolve_log_level(const std::string& flag, const char* env) {
  if (!flag.empty()) {
    if (auto level = parse_log_level(flag)) return *level;
    return make_error("--log-level {} is not a log level: use {}", flag, kNames);
  }
  if (env != nullptr && *env != '\0') {
    if (auto level = parse_log_level(env)) return *level;
    return make_error("{}={} is not a log level: use {} (or --log-level)", kLogLevelEnv, env, kNames);
  }
  return spdlog::level::info;
}

CLI::Validator log_level_name() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (parse_log_level(input)) return {};
        return fmt::format("must be {}, got {}", kNames, input);
      },
      "LEVEL");
}

}  // namespace moeserve::cli
