// vLLM's `serve --api-server-count N` with N > 1: N API-server processes in front of the engine.
//
//   engine process (moeserve serve)                     API-server process i (moeserve _api_server)
//   scheduler, ranks, Engine/DpCoordinator              HttpServer on --host:--port (SO_REUSEPORT)
//   EngineFrontend: ZeroMQ ROUTER (ipc://)  <──────────  RemoteEngineClient: ZeroMQ DEALER
//
// The engine process (the leader) starts the engine, binds the frontend on an ipc:// endpoint in
// a fresh directory only this user can enter, and forks + execs its own binary N times as
// `moeserve _api_server SPEC` (SPEC: JSON with the endpoint, the server's index, the leader's pid
// and the log level; everything else, the API key included, comes over the channel, not the
// command line). Each API server loads the tokenizer, serves the whole OpenAI API exactly as one
// process does, and forwards generation to the engine. The kernel spreads connections among the
// N listening sockets.
//
// Faults: an API server that exits or is killed ends the deployment (the leader logs it at
// critical level, stops the others and the engine, exits 1); the engine failing (a rank's worker
// died, …) ends every API server's requests with 503, then everything exits 1; the leader killed
// takes its API servers down (PR_SET_PDEATHSIG + a parent check every 100 ms: they answer their
// requests with 503 and exit). SIGINT/SIGTERM to the leader stops the API servers gracefully
// (--shutdown-timeout), then the engine, and exits 0; the API servers ignore SIGINT (Ctrl-C
// reaches the whole process group; the leader decides).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "runtime/rank_group.h"
#include "server/live_stats.h"
#include "server/server_options.h"

namespace moeserve {

struct ApiServersSetup {
  int count = 2;
  ServerOptions options;                             // every API server's (port 0: one free port, chosen here)
  std::string tokenizer_dir;                         // where the API servers load the tokenizer from
  nlohmann::ordered_json deployment;                 // the live page's deployment panel
  MetricsRegistry* registry = nullptr;               // the engine process's: the engine half of /metrics
  std::shared_ptr<const LiveStats> live_stats;       // the engine's live-page counters; may be null
  std::function<std::optional<EpStats>()> ep_stats;  // and its expert-parallel ones; may be empty
};

// Whether this build has them (ZeroMQ); without, --api-server-count N > 1 is refused.
bool api_servers_built();

// The leader's part: starts the API servers and watches them until a signal (returns 0 once they
// and the frontend have stopped: the caller stops the engine) or an API server's death (returns
// 1). An engine failure ends the process with status 1 here. Errors: nothing could start.
Result<int> serve_with_api_servers(EngineClient& engine, ApiServersSetup setup);

// The hidden `moeserve _api_server SPEC` subcommand: one API server until the leader stops it
// (0) or the engine is lost (1).
int run_api_server(const std::string& spec);

}  // namespace moeserve
