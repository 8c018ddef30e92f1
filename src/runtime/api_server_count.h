// vLLM's --api-server-count on a node of a deployment (runtime/multi_node_config.h has the other
// multi-node flags): how many API-server processes serve HTTP there.
#pragma once

#include "base/result.h"

namespace moeserve {

// `flag` is -1 when absent. Absent: 1 on the node serving HTTP (the HTTP server in the engine's
// process), 0 on a --headless node. N > 1: N processes in front of the engine's (src/apiserver/),
// with any layout (threads, mp, a multi-node leader). Refused: more than 0 on a headless node, 0
// on the node serving HTTP, more than kMaxApiServers.
inline constexpr int kMaxApiServers = 256;
Result<int> resolve_api_server_count(int flag, bool headless);

}  // namespace moeserve
