#include "runtime/multi_node_config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <charconv>
#include <string_view>

#include <fmt/format.h>

#include "runtime/api_server_count.h"
#include "runtime/parallel_config.h"

namespace moeserve {

namespace {

std::string rank_range(int first, int count) { return fmt::format("{}-{}", first, first + count - 1); }

}  // namespace

Status MultiNodeConfig::validate(int dp, DistributedExecutor executor) const {
  if (start_rank < 0) return make_error("--data-parallel-start-rank must be 0 or more, got {}", start_rank);
  if (size_local != kAllReplicas && size_local < 0) {
    return make_error("--data-parallel-size-local must be 0 or more, got {}", size_local);
  }
  if (rpc_port < 1 || rpc_port > 65535) {
    return make_error("--data-parallel-rpc-port must be a TCP port (1-65535), got {}", rpc_port);
  }
  if (start_rank >= dp) {
    return make_error("--data-parallel-start-rank {} is not a DP rank of --data-parallel-size {} (0-{})", start_rank,
                      dp, dp - 1);
  }
  const int local = local_replicas(dp);
  if (start_rank + local > dp) {
    return make_error("--data-parallel-start-rank {} + --data-parallel-size-local {} = {} is more than "
                      "--data-parallel-size {}: this node would run DP ranks {} of 0-{}",
                      start_rank, local, start_rank + local, dp, rank_range(start_rank, local), dp - 1);
  }
  if (start_rank > 0 && !headless) {
    return make_error("--data-parallel-start-rank {} without --headless is vLLM's hybrid load balancing (an API "
                      "server on every node), which moeserve does not implement: the node serving HTTP runs DP "
                      "ranks from 0, every other node runs with --headless --data-parallel-start-rank R",
                      start_rank);
  }
  if (headless && local == 0) {
    return make_error("--headless with --data-parallel-size-local 0 would run nothing: a headless node runs DP "
                      "ranks (--data-parallel-size-local 1 or more)");
  }
  if (headless && address.empty()) {
    return make_error("--headless needs --data-parallel-address: the leader's address (the node serving HTTP), "
                      "where this node's ranks join the deployment, with --data-parallel-rpc-port (default {})",
                      kDefaultRpcPort);
  }
  if (!spans_nodes(dp)) return ok_status();
  if (address.empty()) {
    return make_error("--data-parallel-size-local {} of --data-parallel-size {} leaves DP ranks {} to other nodes: "
                      "they join through --data-parallel-address (an address of this node they can reach) and "
                      "--data-parallel-rpc-port (default {}); give the address",
                      local, dp, rank_range(local, dp - local), kDefaultRpcPort);
  }
  if (dp < 2) return make_error("multi-node data parallelism needs --data-parallel-size 2 or more, got {}", dp);
  if (executor != DistributedExecutor::kMp) {
    return make_error("DP ranks on other nodes run as worker processes (--distributed-executor-backend mp, the "
                      "default for a deployment over several nodes); {} cannot reach them",
                      executor == DistributedExecutor::kThreads ? "--distributed-executor-backend threads"
                                                                : "--distributed-executor-backend uni");
  }
  return ok_status();
}

std::string MultiNodeConfig::describe(int dp) const {
  if (!spans_nodes(dp)) return {};
  const int local = local_replicas(dp);
  const std::string here =
      local == 0 ? "every DP rank on other nodes"
                 : fmt::format("DP ranks {} here, the others on other nodes", rank_range(start_rank, local));
  return fmt::format("{} (rendezvous {}:{})", here, rendezvous_address(), rpc_port);
}

Result<std::string> resolve_node_address(const std::string& address) {
  in_addr v4{};
  in6_addr v6{};
  if (address.empty() || inet_pton(AF_INET, address.c_str(), &v4) == 1 || inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    return address;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rv = getaddrinfo(address.c_str(), nullptr, &hints, &found); rv != 0) {
    return make_error("--data-parallel-address '{}' is not an IP address and does not resolve: {}", address,
                      gai_strerror(rv));
  }
  const addrinfo* pick = found;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_family == AF_INET) {
      pick = entry;
      break;
    }
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = pick->ai_family == AF_INET
                        ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr)
                        : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr);
  const bool ok = inet_ntop(pick->ai_family, raw, text, sizeof(text)) != nullptr;
  freeaddrinfo(found);
  if (!ok) return make_error("--data-parallel-address '{}': cannot write its address", address);
  return std::string(text);
}

Result<std::chrono::milliseconds> ready_timeout_from_env(const char* value) {
  if (value == nullptr || *value == '\0') return std::chrono::milliseconds(600'000);
  const std::string_view text(value);
  int64_t seconds = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (error != std::errc() || end != text.data() + text.size() || seconds < 1 || seconds > 86'400 * 7) {
    return make_error("VLLM_ENGINE_READY_TIMEOUT_S must be a whole number of seconds from 1 to 604800, got '{}'", text);
  }
  return std::chrono::milliseconds(seconds * 1000);
}

Result<int> resolve_api_server_count(int flag, bool headless) {
  if (flag < 0) return headless ? 0 : 1;
  if (headless && flag > 0) {
    return make_error("--api-server-count {} with --headless: a headless node serves no HTTP (leave the flag out, "
                      "or give 0)",
                      flag);
  }
  if (!headless && flag == 0) {
    return make_error("--api-server-count 0 is for --headless nodes; the node serving HTTP runs 1 or more");
  }
  if (flag > kMaxApiServers) {
    return make_error("--api-server-count {}: at most {} API server processes (each loads the tokenizer and runs its "
                      "own request workers)",
                      flag, kMaxApiServers);
  }
  return flag;
}

}  // namespace moeserve
