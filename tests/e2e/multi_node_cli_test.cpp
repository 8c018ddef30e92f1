// vLLM's multi-node data parallelism end to end, two `moeserve serve` invocations on 127.0.0.1
// as two nodes would run them: the leader (-dp 2 --data-parallel-size-local 1, serving HTTP)
// and a --headless node (--data-parallel-start-rank 1), joined over gloo and ZeroMQ through
// --data-parallel-address / --data-parallel-rpc-port, with expert parallelism across them. Greedy
// completions over HTTP must equal a one-rank server's, also with EPLB moving experts between the
// nodes. Then the failures: either node dying
// ends the other with status 1 and the reason; a node whose peer never appears gives up after
// VLLM_ENGINE_READY_TIMEOUT_S; duplicate or mismatched nodes and bad flag combinations are
// refused with the reason before anything loads.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "e2e/multi_node_client.h"
#include "e2e/serve_process.h"
#include "http_client.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using testing::CommandOptions;
using testing::CommandResult;
using testing::free_port;
using testing::HttpClient;
using testing::run_moeserve;
using testing::ServeProcess;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kPrompts = {"And God said", "The LORD is my shepherd;", "In the beginning",
                                           "Blessed are the"};

// A command that fails is killed (and the test fails) rather than hanging the test.
CommandOptions within_a_minute() {
  CommandOptions options;
  options.timeout_s = 60;
  return options;
}

// Every node's flags: -dp 2 with one replica per node, EP over both, the leader at 127.0.0.1:port
// (named by `address`); `extra` on both.
std::vector<std::string> node_flags(int rpc_port, const std::vector<std::string>& extra,
                                    const std::string& address = "127.0.0.1") {
  std::vector<std::string> flags = {"-dp",
                                    "2",
                                    "--enable-expert-parallel",
                                    "--data-parallel-size-local",
                                    "1",
                                    "--data-parallel-address",
                                    address,
                                    "--data-parallel-rpc-port",
                                    std::to_string(rpc_port),
                                    "--threads",
                                    "1"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

std::vector<std::string> leader_args(int rpc_port, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {testing::demo_model(), "--host", "127.0.0.1", "--port", "0"};
  for (const std::string& flag : node_flags(rpc_port, extra)) args.push_back(flag);
  return args;
}

std::vector<std::string> headless_argv(int rpc_port, const std::vector<std::string>& extra = {},
                                       const std::string& address = "127.0.0.1") {
  std::vector<std::string> argv = {
      MOESERVE_BINARY, "serve", testing::demo_model(), "--headless", "--data-parallel-start-rank", "1"};
  for (const std::string& flag : node_flags(rpc_port, extra, address)) argv.push_back(flag);
  return argv;
}

// The headless node, started first (it waits for the leader); "ready" once it says whom it joins
// (a host name given as the address is resolved first).
ServeProcess::Command headless_command(int rpc_port, const std::vector<std::string>& extra = {},
                                       const std::string& address = "127.0.0.1") {
  return {headless_argv(rpc_port, extra, address), std::regex(R"(joining the leader at 127\.0\.0\.1:([0-9]+))")};
}

// The greedy completion of every prompt, asked concurrently so both DP replicas get work.
std::vector<std::string> complete_all(int port) { return testing::complete_all(port, kPrompts); }

TEST(MultiNodeCli, LeaderAndHeadlessNodeMatchOneRank) {
  std::vector<std::string> expected;
  {
    ServeProcess single({testing::demo_model(), "--host", "127.0.0.1", "--port", "0", "--threads", "2"});
    expected = complete_all(single.port());
    EXPECT_EQ(single.terminate(), 0);
  }
  for (const std::string& text : expected) ASSERT_FALSE(text.rfind("HTTP ", 0) == 0) << text;

  const int rpc_port = free_port();
  // The headless node names the leader by host name.
  ServeProcess headless(headless_command(rpc_port, {}, "localhost"));
  ServeProcess leader(leader_args(rpc_port));
  EXPECT_NE(headless.output().find("--data-parallel-address localhost is 127.0.0.1"), std::string::npos)
      << headless.output();
  EXPECT_NE(leader.output().find("parallel layout: EP 2 = TP 1 × DP 2"), std::string::npos) << leader.output();
  EXPECT_NE(leader.output().find(
                "DP ranks 0-0 here, the others on other nodes (rendezvous 127.0.0.1:" + std::to_string(rpc_port) + ")"),
            std::string::npos)
      << leader.output();
  EXPECT_NE(headless.output().find("--headless: started 1 rank workers"), std::string::npos) << headless.output();
  // The headless node checked its own host for its replica before starting it.
  EXPECT_NE(headless.output().find("--headless: this node's ranks fit: "), std::string::npos) << headless.output();
  EXPECT_EQ(complete_all(leader.port()), expected) << leader.output() << headless.output();

  // A node with another layout, or for ranks another node already runs, is refused.
  const CommandResult other_layout =
      run_moeserve({"serve", testing::demo_model(), "--headless", "--data-parallel-start-rank", "1", "-dp", "2",
                    "--data-parallel-size-local", "1", "--data-parallel-address", "127.0.0.1",
                    "--data-parallel-rpc-port", std::to_string(rpc_port)},
                   within_a_minute());
  EXPECT_EQ(other_layout.exit_code, 1) << other_layout.output;
  EXPECT_NE(other_layout.output.find("is not the leader's"), std::string::npos) << other_layout.output;
  std::vector<std::string> duplicate = headless_argv(rpc_port);
  duplicate.erase(duplicate.begin());
  const CommandResult twice = run_moeserve(duplicate, within_a_minute());
  EXPECT_EQ(twice.exit_code, 1) << twice.output;
  EXPECT_NE(twice.output.find("rank 1 (DP rank 1) already runs on another node"), std::string::npos) << twice.output;
  EXPECT_EQ(complete_all(leader.port()), expected) << "the refused nodes disturbed the deployment";

  // The leader ends the deployment; the headless node follows with status 0.
  EXPECT_EQ(leader.terminate(), 0) << leader.output();
  EXPECT_EQ(headless.wait_exit(std::chrono::seconds(20)), 0) << headless.output();
  EXPECT_NE(headless.output().find("the leader ended the deployment"), std::string::npos) << headless.output();

  // EPLB rearranging every 4 steps over 2 redundant slots: expert weights move between the nodes.
  const std::vector<std::string> eplb = {"--enable-eplb", "--eplb-config",
                                         R"({"window_size":3,"step_interval":4,"num_redundant_experts":2})"};
  const int eplb_port = free_port();
  ServeProcess eplb_headless(headless_command(eplb_port, eplb));
  ServeProcess eplb_leader(leader_args(eplb_port, eplb));
  EXPECT_EQ(complete_all(eplb_leader.port()), expected) << eplb_leader.output() << eplb_headless.output();
  EXPECT_NE(eplb_leader.output().find("EPLB rearrangement 2 after step"), std::string::npos) << eplb_leader.output();
  EXPECT_EQ(eplb_leader.terminate(), 0) << eplb_leader.output();
  EXPECT_EQ(eplb_headless.wait_exit(std::chrono::seconds(20)), 0) << eplb_headless.output();
}

// The leader with two API-server processes in front of its engine (--api-server-count 2): the
// same answers as one rank; a normal stop ends both nodes with 0.
TEST(MultiNodeCli, LeaderWithTwoApiServersMatchesOneRank) {
  std::vector<std::string> expected;
  {
    ServeProcess single({testing::demo_model(), "--host", "127.0.0.1", "--port", "0", "--threads", "2"});
    expected = complete_all(single.port());
    EXPECT_EQ(single.terminate(), 0);
  }
  const int rpc_port = free_port();
  ServeProcess headless(headless_command(rpc_port));
  std::vector<std::string> args = leader_args(rpc_port);
  args.insert(args.end(), {"--api-server-count", "2"});
  ServeProcess leader(args);
  EXPECT_NE(leader.output().find("2 API server processes"), std::string::npos) << leader.output();
  EXPECT_EQ(complete_all(leader.port()), expected) << leader.output() << headless.output();
  EXPECT_EQ(leader.terminate(), 0) << leader.output();
  EXPECT_EQ(headless.wait_exit(std::chrono::seconds(20)), 0) << headless.output();
}

// What the other node did after one of a running pair was killed with SIGKILL.
struct Survivor {
  int exit_status = -1;
  Clock::duration took{};  // from the kill to its exit
  std::string output;
  int rpc_port = 0;
};

enum class Victim { kLeader, kHeadlessNode, kHeadlessWorker };

// Sends `signal` to the victim of a running pair; the survivor is the leader, except when the
// leader is the victim.
Survivor signal_one_of_a_pair(Victim victim, int signal) {
  Survivor survivor;
  survivor.rpc_port = free_port();
  ServeProcess headless(headless_command(survivor.rpc_port));
  ServeProcess leader(leader_args(survivor.rpc_port));
  ServeProcess& other = victim == Victim::kLeader ? headless : leader;
  pid_t pid = victim == Victim::kLeader ? leader.pid() : headless.pid();
  if (victim == Victim::kHeadlessWorker) {
    std::smatch worker;
    const std::string log = headless.output();
    if (!std::regex_search(log, worker, std::regex(R"(started 1 rank workers \(pids ([0-9]+)\))"))) return survivor;
    pid = std::stoi(worker[1]);
  }
  const auto killed_at = Clock::now();
  if (::kill(pid, signal) != 0) return survivor;
  survivor.exit_status = other.wait_exit(std::chrono::seconds(20));
  survivor.took = Clock::now() - killed_at;
  survivor.output = other.output();
  return survivor;
}

TEST(MultiNodeCli, EitherNodeDyingEndsTheOther) {
  // The headless node is killed: its worker dies with it, the leader sees the connection close. A
  // worker there that stops answering (as on a host that vanished) is dropped by the heartbeats.
  for (const auto& [victim, signal] : {std::pair{Victim::kHeadlessNode, SIGKILL}, {Victim::kHeadlessWorker, SIGSTOP}}) {
    const Survivor leader = signal_one_of_a_pair(victim, signal);
    EXPECT_EQ(leader.exit_status, 1) << leader.output;
    EXPECT_LE(leader.took, std::chrono::seconds(10)) << signal;
    EXPECT_NE(leader.output.find("rank 1's worker (on another node) lost its connection"), std::string::npos)
        << leader.output;
    EXPECT_NE(leader.output.find("the engine cannot go on, exiting"), std::string::npos) << leader.output;
  }
  // The leader is killed: the headless node loses it, ends its worker and exits 1.
  const Survivor headless = signal_one_of_a_pair(Victim::kLeader, SIGKILL);
  EXPECT_EQ(headless.exit_status, 1) << headless.output;
  EXPECT_LE(headless.took, std::chrono::seconds(10));
  EXPECT_NE(headless.output.find("--headless: lost the leader at 127.0.0.1:" + std::to_string(headless.rpc_port)),
            std::string::npos)
      << headless.output;
}

TEST(MultiNodeCli, ANodeWhosePeerNeverAppearsGivesUp) {
  CommandOptions two_seconds = within_a_minute();
  two_seconds.env = {{"VLLM_ENGINE_READY_TIMEOUT_S", "2"}};
  const int rpc_port = free_port();
  auto started = Clock::now();
  std::vector<std::string> headless = headless_argv(rpc_port);
  headless.erase(headless.begin());
  const CommandResult alone = run_moeserve(headless, two_seconds);
  EXPECT_EQ(alone.exit_code, 1) << alone.output;
  EXPECT_LE(Clock::now() - started, std::chrono::seconds(15));
  EXPECT_NE(alone.output.find("--headless: the leader did not appear at 127.0.0.1:" + std::to_string(rpc_port) +
                              " within 2 s"),
            std::string::npos)
      << alone.output;

  started = Clock::now();
  std::vector<std::string> leader = {"serve"};
  for (const std::string& arg : leader_args(rpc_port)) leader.push_back(arg);
  const CommandResult lonely = run_moeserve(leader, two_seconds);
  EXPECT_EQ(lonely.exit_code, 1) << lonely.output;
  EXPECT_LE(Clock::now() - started, std::chrono::seconds(20));
  EXPECT_NE(lonely.output.find("rank 1's worker (on another node) did not connect within 2 s"), std::string::npos)
      << lonely.output;
}

TEST(MultiNodeCli, BadFlagCombinationsAreRefused) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"-dp", "2", "--data-parallel-size-local", "2", "--data-parallel-start-rank", "1", "--headless",
        "--data-parallel-address", "127.0.0.1"},
       "--data-parallel-start-rank 1 + --data-parallel-size-local 2 = 3 is more than --data-parallel-size 2"},
      {{"-dp", "2", "--data-parallel-start-rank", "2", "--headless", "--data-parallel-address", "127.0.0.1"},
       "--data-parallel-start-rank 2 is not a DP rank of --data-parallel-size 2"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--headless"},
       "--headless needs --data-parallel-address"},
      {{"-dp", "2", "--data-parallel-size-local", "1"}, "leaves DP ranks 1-1 to other nodes"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-address", "127.0.0.1",
        "--distributed-executor-backend", "threads"},
       "--distributed-executor-backend threads cannot reach them"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--data-parallel-address",
        "127.0.0.1"},
       "without --headless is vLLM's hybrid load balancing"},
      {{"-dp", "2", "--data-parallel-size-local", "0", "--headless", "--data-parallel-address", "127.0.0.1"},
       "--headless with --data-parallel-size-local 0 would run nothing"},
      {{"--data-parallel-size-local", "0", "--data-parallel-address", "127.0.0.1"},
       "multi-node data parallelism needs --data-parallel-size 2 or more"},
      {{"--api-server-count", "0"}, "--api-server-count 0 is for --headless nodes"},
      {{"--api-server-count", "-1"}, "must be a non-negative integer, got -1"},
      {{"--api-server-count", "two"}, "must be a non-negative integer, got two"},
      {{"--api-server-count", "257"}, "--api-server-count 257: at most 256 API server processes"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--headless",
        "--data-parallel-address", "127.0.0.1", "--api-server-count", "2"},
       "--api-server-count 2 with --headless: a headless node serves no HTTP"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--headless",
        "--data-parallel-address", "127.0.0.1", "--api-server-count", "1"},
       "a headless node serves no HTTP"},
      {{"--data-parallel-rpc-port", "70000"}, "must be a TCP port (1-65535), got 70000"},
      {{"--data-parallel-size-local", "-1"}, "must be a non-negative integer, got -1"},
      {{"-dp", "2", "--data-parallel-size-local", "1", "--data-parallel-start-rank", "1", "--headless",
        "--data-parallel-address", "127.0.0.1", "--device", "cuda", "--dtype", "float16"},
       "--dtype float16: the CUDA runner computes with bf16 weights"},
      {{"-dp", "2", "--data-parallel-rank", "1"}, "does not implement vLLM's --data-parallel-rank yet"},
      {{"-dp", "2", "--data-parallel-hybrid-lb"}, "does not implement vLLM's --data-parallel-hybrid-lb yet"},
  };
  for (const auto& [flags, reason] : cases) {
    std::vector<std::string> args = {"serve", testing::demo_model(), "--port", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto started = Clock::now();
    const CommandResult run = run_moeserve(args, within_a_minute());
    EXPECT_NE(run.exit_code, 0) << reason;
    EXPECT_FALSE(run.timed_out) << reason;
    EXPECT_LE(Clock::now() - started, std::chrono::seconds(10)) << reason;
    EXPECT_NE(run.output.find(reason), std::string::npos) << run.output;
    EXPECT_EQ(run.output.find(" on http://"), std::string::npos) << run.output;  // no server came up
  }
  // vLLM's short names reach the same flags.
  const CommandResult short_names = run_moeserve(
      {"serve", testing::demo_model(), "-dp", "2", "-dpl", "1", "-dpr", "1", "--headless"}, within_a_minute());
  EXPECT_NE(short_names.output.find("--headless needs --data-parallel-address"), std::string::npos)
      << short_names.output;
}

}  // namespace
}  // namespace moeserve
