// When the engine cannot go on (a rank's worker process died, another node went away): what the
// process does about it. `serve` installs a handler that answers /health and every request in
// flight with 503 and the reason; without one (generate, bench) the process ends at once. Either
// way the process then ends with status 1.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace moeserve {

using EngineFailureHandler = std::function<void(const std::string& reason)>;

// Called (once, on the failing thread) by fail_engine; it must not block for long. Replacing the
// handler (nullptr: none) waits for a call of the old one under way to return, so what it
// captured may be destroyed once this returns.
void set_engine_failure_handler(EngineFailureHandler handler);

// The reason the engine failed, once it has.
std::optional<std::string> engine_failure();

// Records the reason, tells the handler, waits up to kEngineFailureGraceMs for the process to
// end through it (serve exits 1 once its answers are out), then ends the process with status 1.
inline constexpr int kEngineFailureGraceMs = 5000;
[[noreturn]] void fail_engine(const std::string& reason);

}  // namespace moeserve
