// Starting this binary again as one of its hidden subcommands (`moeserve _worker SPEC`,
// `moeserve _api_server SPEC`): the rank workers of --distributed-executor-backend mp and the
// API-server processes of --api-server-count.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/result.h"

namespace moeserve {

// Forks and execs /proc/self/exe as `moeserve SUBCOMMAND SPEC`. The child gets `death_signal`
// when the thread that forked it exits (PR_SET_PDEATHSIG), and exits at once if its parent is
// already gone. It starts with no signal blocked, SIGINT ignored (a Ctrl-C reaches the whole
// process group; the parent decides when its children stop) and SIGTERM at its default.
// `what` names the flag in the errors.
Result<pid_t> spawn_self(std::string_view subcommand, const std::string& spec, int death_signal,
                         std::string_view what);

}  // namespace moeserve
