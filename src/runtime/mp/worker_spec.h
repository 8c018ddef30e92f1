// The SPEC of `moeserve _worker SPEC` (--distributed-executor-backend mp), one JSON object: the
// model directory, the load options, the layout, the KV blocks, where the rendezvous store is,
// the worker's rank and its ZeroMQ endpoint, the pid of the process that started it and the log
// level. Written by the engine (runtime/mp/process_ranks.cpp) and, for the ranks of a --headless
// node, by that node from what the leader published (runtime/mp/headless_node.cpp); and the
// fork + exec that starts a worker with it.
#pragma once

#include <sys/types.h>

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "runtime/loaded_model.h"
#include "runtime/parallel_config.h"

namespace moeserve::mp {

using Json = nlohmann::json;

Json load_options_json(const LoadOptions& load);
LoadOptions load_options_from(const Json& j);
// The layout a worker needs (not the multi-node part: a worker only joins its groups).
Json parallel_json(const ParallelConfig& p);
ParallelConfig parallel_from(const Json& j);

// Forks and execs this binary as `moeserve _worker SPEC`; the child dies with this process
// (PR_SET_PDEATHSIG). spec["parent"] must be this process's pid.
Result<pid_t> spawn_worker(const Json& spec);

// "exited with status 1", "was killed by signal 9 (Killed)": a waitpid status.
std::string describe_status(int status);

}  // namespace moeserve::mp
