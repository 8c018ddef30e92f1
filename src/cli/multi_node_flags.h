// vLLM's multi-node data-parallel flags of `moeserve serve` (runtime/multi_node_config.h says
// what they mean): --data-parallel-size-local, --data-parallel-start-rank,
// --data-parallel-address, --data-parallel-rpc-port, --headless, and --api-server-count.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "runtime/api_server_count.h"
#include "runtime/multi_node_config.h"

namespace moeserve::cli {

struct MultiNodeFlags {
  int data_parallel_size_local = MultiNodeConfig::kAllReplicas;
  int data_parallel_start_rank = 0;
  std::string data_parallel_address;
  int data_parallel_rpc_port = MultiNodeConfig::kDefaultRpcPort;
  bool headless = false;
  int api_server_count = -1;  // absent: 1, or 0 on a --headless node

  void add_to(CLI::App& command);
  // The API-server processes to run (resolve_api_server_count; after config() succeeded).
  int api_servers() const { return resolve_api_server_count(api_server_count, headless).value(); }
  // The node's part of the deployment, with VLLM_ENGINE_READY_TIMEOUT_S read from the
  // environment, after resolve_api_server_count has accepted --api-server-count. The
  // rules between the data-parallel flags are MultiNodeConfig::validate's.
  Result<MultiNodeConfig> config() const;
};

}  // namespace moeserve::cli
