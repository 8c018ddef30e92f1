// MultiNodeConfig: which DP replicas a node runs under vLLM's multi-node flags, the rules between
// those flags (each refusal names the flags and what to do), --api-server-count, and
// VLLM_ENGINE_READY_TIMEOUT_S.
#include "runtime/multi_node_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/api_server_count.h"
#include "runtime/parallel_config.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

MultiNodeConfig leader(int size_local) {
  MultiNodeConfig nodes;
  nodes.size_local = size_local;
  nodes.address = "10.0.0.1";
  return nodes;
}

MultiNodeConfig headless(int start_rank, int size_local) {
  MultiNodeConfig nodes = leader(size_local);
  nodes.start_rank = start_rank;
  nodes.headless = true;
  return nodes;
}

std::string refusal(const MultiNodeConfig& nodes, int dp, DistributedExecutor executor = DistributedExecutor::kMp) {
  const Status status = nodes.validate(dp, executor);
  return status.ok() ? "" : status.error().message;
}

TEST(MultiNodeConfig, WithoutFlagsEveryReplicaIsLocal) {
  const MultiNodeConfig nodes;
  EXPECT_EQ(nodes.local_replicas(4), 4);
  EXPECT_FALSE(nodes.spans_nodes(4));
  EXPECT_FALSE(nodes.fixed_rendezvous(4));
  EXPECT_EQ(nodes.describe(4), "");
  EXPECT_EQ(refusal(nodes, 4, DistributedExecutor::kThreads), "");
}

TEST(MultiNodeConfig, ReplicasAndRanksOfANode) {
  // -dp 4 -tp 2: the leader runs DP ranks 0-1 (global ranks 0-3), the headless node 2-3 (4-7).
  ParallelConfig parallel;
  parallel.tensor_parallel_size = 2;
  parallel.data_parallel_size = 4;
  parallel.executor = DistributedExecutor::kMp;
  parallel.nodes = leader(2);
  EXPECT_EQ(parallel.local_world_size(), 4);
  for (int rank = 0; rank < 8; ++rank) EXPECT_EQ(parallel.is_local_rank(rank), rank < 4) << rank;
  EXPECT_TRUE(parallel.nodes.spans_nodes(4));
  EXPECT_EQ(parallel.nodes.describe(4), "DP ranks 0-1 here, the others on other nodes (rendezvous 10.0.0.1:29550)");
  EXPECT_TRUE(parallel.validate().ok());
  parallel.nodes = headless(2, 2);
  for (int rank = 0; rank < 8; ++rank) EXPECT_EQ(parallel.is_local_rank(rank), rank >= 4) << rank;
  EXPECT_TRUE(parallel.validate().ok());
  // A headless node without --data-parallel-size-local runs the replicas from its start rank on.
  parallel.nodes = headless(1, MultiNodeConfig::kAllReplicas);
  EXPECT_EQ(parallel.nodes.local_replicas(4), 3);
  // The leader may run no replica (vLLM's "API server only" node).
  parallel.nodes = leader(0);
  EXPECT_EQ(parallel.local_world_size(), 0);
  EXPECT_EQ(parallel.nodes.describe(4), "every DP rank on other nodes (rendezvous 10.0.0.1:29550)");
  EXPECT_TRUE(parallel.validate().ok());
}

TEST(MultiNodeConfig, BadCombinationsAreRefusedWithTheFix) {
  EXPECT_THAT(refusal(headless(1, 2), 2), HasSubstr("--data-parallel-start-rank 1 + --data-parallel-size-local 2 = 3 "
                                                    "is more than --data-parallel-size 2: this node would run DP "
                                                    "ranks 1-2 of 0-1"));
  EXPECT_THAT(refusal(headless(2, 1), 2), HasSubstr("--data-parallel-start-rank 2 is not a DP rank"));
  MultiNodeConfig no_address = headless(1, 1);
  no_address.address.clear();
  EXPECT_THAT(refusal(no_address, 2), HasSubstr("--headless needs --data-parallel-address"));
  MultiNodeConfig leader_no_address = leader(1);
  leader_no_address.address.clear();
  EXPECT_THAT(refusal(leader_no_address, 2), HasSubstr("leaves DP ranks 1-1 to other nodes"));
  MultiNodeConfig hybrid = leader(1);
  hybrid.start_rank = 1;
  EXPECT_THAT(refusal(hybrid, 2), HasSubstr("hybrid load balancing"));
  EXPECT_THAT(refusal(headless(0, 0), 2), HasSubstr("would run nothing"));
  EXPECT_THAT(refusal(leader(0), 1), HasSubstr("needs --data-parallel-size 2 or more"));
  EXPECT_THAT(refusal(leader(1), 2, DistributedExecutor::kThreads),
              HasSubstr("--distributed-executor-backend threads cannot reach them"));
  EXPECT_THAT(refusal(headless(1, 1), 2, DistributedExecutor::kUni),
              HasSubstr("--distributed-executor-backend uni cannot reach them"));
  MultiNodeConfig port = leader(1);
  port.rpc_port = 0;
  EXPECT_THAT(refusal(port, 2), HasSubstr("--data-parallel-rpc-port must be a TCP port"));
  // An address on one node only moves the rendezvous there.
  MultiNodeConfig one_node = leader(MultiNodeConfig::kAllReplicas);
  EXPECT_FALSE(one_node.spans_nodes(2));
  EXPECT_TRUE(one_node.fixed_rendezvous(2));
  EXPECT_EQ(refusal(one_node, 2, DistributedExecutor::kThreads), "");
}

// --data-parallel-address: numbers as given, a host name resolved (IPv4 first), a name that does
// not resolve refused with the resolver's reason.
TEST(MultiNodeConfig, AddressesAndHostNames) {
  EXPECT_EQ(*resolve_node_address(""), "");
  EXPECT_EQ(*resolve_node_address("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(*resolve_node_address("::1"), "::1");
  EXPECT_EQ(*resolve_node_address("localhost"), "127.0.0.1");
  const auto unknown = resolve_node_address("no-such-node.invalid");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message,
              HasSubstr("--data-parallel-address 'no-such-node.invalid' is not an IP address and does not resolve"));
}

TEST(MultiNodeConfig, ApiServerCount) {
  // Absent: one API server (in the engine's process) on the node serving HTTP, none headless.
  EXPECT_EQ(resolve_api_server_count(-1, false).value(), 1);
  EXPECT_EQ(resolve_api_server_count(-1, true).value(), 0);
  EXPECT_EQ(resolve_api_server_count(0, true).value(), 0);
  // N >= 1 on the node serving HTTP, whatever its layout: N processes when N > 1.
  for (int count : {1, 2, 8, kMaxApiServers}) EXPECT_EQ(resolve_api_server_count(count, false).value(), count);
  const auto refusal = [](int count, bool headless) {
    const Result<int> resolved = resolve_api_server_count(count, headless);
    return resolved.ok() ? std::string() : resolved.error().message;
  };
  EXPECT_THAT(refusal(0, false), HasSubstr("--api-server-count 0 is for --headless nodes"));
  EXPECT_THAT(refusal(1, true), HasSubstr("--api-server-count 1 with --headless: a headless node serves no HTTP"));
  EXPECT_THAT(refusal(2, true), HasSubstr("--api-server-count 2 with --headless"));
  EXPECT_THAT(refusal(kMaxApiServers + 1, false), HasSubstr("--api-server-count 257: at most 256 API server processes"));
}

TEST(MultiNodeConfig, ReadyTimeoutFromTheEnvironment) {
  EXPECT_EQ(*ready_timeout_from_env(nullptr), std::chrono::milliseconds(600'000));
  EXPECT_EQ(*ready_timeout_from_env(""), std::chrono::milliseconds(600'000));
  EXPECT_EQ(*ready_timeout_from_env("3"), std::chrono::milliseconds(3'000));
  for (const char* bad : {"0", "-5", "1.5", "ten", "999999999"}) {
    const auto timeout = ready_timeout_from_env(bad);
    ASSERT_FALSE(timeout.ok()) << bad;
    EXPECT_THAT(timeout.error().message, HasSubstr("VLLM_ENGINE_READY_TIMEOUT_S must be a whole number")) << bad;
  }
}

}  // namespace
}  // namespace moeserve
