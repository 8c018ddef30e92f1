// CUDA ranks in worker processes over two "nodes" on 127.0.0.1 (vLLM's multi-node data
// parallelism, as tests/e2e/multi_node_cli_test.cpp runs it on the CPU), every rank on this
// machine's GPU: a leader (-dp 2 --data-parallel-size-local 1, serving HTTP) and a --headless
// node, expert parallelism and EPLB across them, both with --device cuda. Greedy completions over
// HTTP must equal a one-GPU server's; the KV caches are sized together from the GPU's memory.
#include <gtest/gtest.h>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/multi_node_client.h"
#include "e2e/serve_process.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using testing::ServeProcess;

const std::vector<std::string> kPrompts = {"And God said", "The LORD is my shepherd;", "In the beginning",
                                           "Blessed are"};

std::vector<std::string> complete_all(int port) { return testing::complete_all(port, kPrompts); }

TEST(CudaMultiNode, LeaderAndHeadlessNodeMatchOneGpu) {
  const std::vector<std::string> serve_one = {
      testing::demo_model(),      "--host", "127.0.0.1", "--port", "0", "--device", "cuda",
      "--gpu-memory-utilization", "0.3"};
  std::vector<std::string> expected;
  {
    ServeProcess single(serve_one);
    expected = complete_all(single.port());
    EXPECT_EQ(single.terminate(), 0);
  }
  for (const std::string& text : expected) ASSERT_FALSE(text.rfind("HTTP ", 0) == 0) << text;
  const int rpc_port = testing::free_port();
  const std::vector<std::string> node = {"-dp",
                                         "2",
                                         "--enable-expert-parallel",
                                         "--enable-eplb",
                                         "--eplb-config",
                                         R"({"window_size":4,"step_interval":4})",
                                         "--data-parallel-size-local",
                                         "1",
                                         "--data-parallel-address",
                                         "127.0.0.1",
                                         "--data-parallel-rpc-port",
                                         std::to_string(rpc_port),
                                         "--device",
                                         "cuda",
                                         "--gpu-memory-utilization",
                                         "0.3"};
  std::vector<std::string> headless_argv = {
      MOESERVE_BINARY, "serve", testing::demo_model(), "--headless", "--data-parallel-start-rank", "1"};
  headless_argv.insert(headless_argv.end(), node.begin(), node.end());
  ServeProcess headless(
      ServeProcess::Command{headless_argv, std::regex(R"(joining the leader at 127\.0\.0\.1:([0-9]+))")});
  std::vector<std::string> leader_args = {testing::demo_model(), "--host", "127.0.0.1", "--port", "0"};
  leader_args.insert(leader_args.end(), node.begin(), node.end());
  ServeProcess leader(leader_args);
  EXPECT_NE(leader.output().find("ranks as worker processes, rank r on GPU r mod its host's GPUs"), std::string::npos)
      << leader.output();
  // Twice: the second round runs after EPLB has moved experts between the nodes' GPUs.
  EXPECT_EQ(complete_all(leader.port()), expected) << leader.output() << headless.output();
  EXPECT_EQ(complete_all(leader.port()), expected) << leader.output() << headless.output();
  EXPECT_NE(leader.output().find("EPLB rearrangement 1"), std::string::npos) << leader.output();
  EXPECT_EQ(leader.terminate(), 0) << leader.output();
  EXPECT_EQ(headless.wait_exit(std::chrono::seconds(20)), 0) << headless.output();
}

}  // namespace
}  // namespace moeserve
