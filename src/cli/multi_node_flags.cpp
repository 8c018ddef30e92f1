#include "cli/multi_node_flags.h"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "cli/flag_checks.h"

namespace moeserve::cli {

void MultiNodeFlags::add_to(CLI::App& command) {
  command
      .add_option("--data-parallel-size-local", data_parallel_size_local,
                  "DP replicas run by this node (default: all of them, from --data-parallel-start-rank); fewer than "
                  "--data-parallel-size leaves the others to --headless nodes")
      ->check(non_negative_int());
  command
      .add_option("--data-parallel-start-rank", data_parallel_start_rank,
                  "The first DP rank this node runs (a --headless node's; the leader runs from 0)")
      ->check(non_negative_int());
  command.add_option("--data-parallel-address", data_parallel_address,
                     "The leader's address (an IP address or host name of the node serving HTTP) where every "
                     "node's ranks meet");
  command
      .add_option("--data-parallel-rpc-port", data_parallel_rpc_port,
                  "The leader's port for the rendezvous and the nodes' control (default 29550)")
      ->check(int_in_range(1, 65535, "a TCP port (1-65535)", "PORT"));
  command.add_flag("--headless", headless,
                   "Run this node's DP ranks for a leader elsewhere (--data-parallel-address), without an HTTP server");
  command
      .add_option("--api-server-count", api_server_count,
                  "API server processes: 1 (the HTTP server in the engine's process, the default); N > 1: N processes "
                  "serving the same --host/--port in front of the engine's process; 0 (or absent) on a --headless node")
      ->check(non_negative_int());
}

Result<MultiNodeConfig> MultiNodeFlags::config() const {
  MS_RETURN_IF_ERROR(resolve_api_server_count(api_server_count, headless));
  MultiNodeConfig config;
  config.size_local = data_parallel_size_local;
  config.start_rank = data_parallel_start_rank;
  MS_ASSIGN_OR_RETURN(config.address, resolve_node_address(data_parallel_address));
  if (config.address != data_parallel_address) {
    spdlog::info("--data-parallel-address {} is {}", data_parallel_address, config.address);
  }
  config.rpc_port = data_parallel_rpc_port;
  config.headless = headless;
  MS_ASSIGN_OR_RETURN(config.ready_timeout, ready_timeout_from_env(std::getenv("VLLM_ENGINE_READY_TIMEOUT_S")));
  return config;
}

}  // namespace moeserve::cli
