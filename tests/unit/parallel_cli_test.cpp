// The parallel flags end to end through the built binary: `generate` on the KJV demo model with
// -tp 2, -dp 2 --enable-expert-parallel and -tp 2 -dp 2 (both all-to-all backends) prints the
// same greedy continuation as one rank and logs the layout; bad layouts and flag combinations
// are refused with the reason (also --device cuda with --dtype float16).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "reference_data.h"
#include "runtime/make_runner.h"

namespace moeserve {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult run_moeserve(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::string binary = MOESERVE_BINARY;
    std::vector<std::string> copies = args;
    std::vector<char*> argv{binary.data()};
    for (auto& arg : copies) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  CommandResult result;
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) result.output.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The output_ids of `generate --json` (its last line).
std::vector<int> generated_ids(const CommandResult& run) {
  const std::string last = run.output.substr(run.output.rfind('{'));
  return nlohmann::json::parse(last)["output_ids"].get<std::vector<int>>();
}

std::vector<std::string> generate_args(std::vector<std::string> extra) {
  std::vector<std::string> args = {"generate", testing::demo_model(), "--prompt", "And God said", "--max-tokens",
                                   "24", "--ignore-eos", "--json", "--threads", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(ParallelCli, GenerateMatchesOneRankInEveryLayout) {
  const CommandResult single = run_moeserve(generate_args({}));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const std::vector<int> expected = generated_ids(single);
  ASSERT_EQ(expected.size(), 24u);
  const std::vector<std::pair<std::vector<std::string>, std::string>> layouts = {
      {{"-tp", "2"}, "TP 2 × DP 1"},
      // --device auto (the default): the CPU in a build without CUDA or where no GPU is visible.
      {{"-tp", "2", "--device", "auto"}, "TP 2 × DP 1"},
      {{"-dp", "2", "--enable-expert-parallel"}, "EP 2 = TP 1 × DP 2 (allgather_reducescatter"},
      {{"--tensor-parallel-size=2", "-dp=2", "--enable-expert-parallel", "--all2all-backend", "nccl_alltoall"},
       "EP 4 = TP 2 × DP 2 (nccl_alltoall"},
      {{"-tp", "2", "-dp", "2", "--enable-expert-parallel", "--expert-placement-strategy", "round_robin"},
       "EP 4 = TP 2 × DP 2 (allgather_reducescatter, round_robin placement), experts 0,4 on rank 0"},
  };
  for (const auto& [flags, layout] : layouts) {
    const CommandResult run = run_moeserve(generate_args(flags));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find("parallel layout: " + layout), std::string::npos) << run.output;
    EXPECT_EQ(generated_ids(run), expected) << flags.front();
    // The startup log says why the CPU runs it (--device auto takes a visible GPU).
    if (!cuda_compiled()) {
      EXPECT_NE(run.output.find("backend: cpu (--device auto: this build has no CUDA backend"), std::string::npos)
          << run.output;
    }
  }
}

TEST(ParallelCli, InvalidLayoutsAreRefusedWithTheReason) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"-tp", "4"}, "the number of attention heads (6) is not divisible by the tensor-parallel size 4"},
      {{"-tp", "3"}, "the tensor-parallel size 3 is not a multiple of the number of KV heads (2)"},
      {{"-dp", "3", "--enable-expert-parallel"}, "is not divisible by the expert-parallel size 3"},
      {{"-dp", "2", "--enable-eplb"}, "--enable-eplb requires --enable-expert-parallel"},
      {{"--enable-expert-parallel", "--enable-eplb"}, "--enable-eplb requires more than one rank"},
      {{"-dp", "2", "--enable-expert-parallel", "--all2all-backend", "deepep_low_latency"},
       "'deepep_low_latency' is not supported"},
      {{"-dp", "2", "--enable-expert-parallel", "--expert-placement-strategy", "random"},
       "'random' is not supported (supported: linear, round_robin)"},
      {{"-dp", "2", "--enable-expert-parallel", "--enable-eplb", "--eplb-config", "{\"window\":3}"},
       "--eplb-config has no field 'window'"},
      {{"-dp", "2", "--enable-expert-parallel", "--eplb-config", "{\"num_redundant_experts\":2}"},
       "only allowed with --enable-eplb"},
      {{"--device", "cuda", "--dtype", "float16"}, "--dtype float16: the CUDA runner computes with bf16 weights"},
  };
  for (const auto& [flags, reason] : cases) {
    const CommandResult run = run_moeserve(generate_args(flags));
    EXPECT_NE(run.exit_code, 0) << flags.front();
    EXPECT_NE(run.output.find(reason), std::string::npos) << run.output;
  }
}

// `bench throughput` takes serve's parallel flags (it refused them; with -dp 2 it then crashed on
// the missing single engine): every layout finishes every request at its full length.
TEST(ParallelCli, BenchThroughputRunsEveryLayout) {
  const std::string out = ::testing::TempDir() + "/parallel_throughput.json";
  for (const std::vector<std::string>& layout :
       {std::vector<std::string>{"-tp", "2"}, {"-dp", "2"}, {"-dp", "2", "--enable-expert-parallel"},
        {"-dp", "2", "--enable-expert-parallel", "--enable-eplb", "--eplb-config",
         R"({"window_size":4,"step_interval":4})"}}) {
    std::vector<std::string> args = {"bench", "throughput", testing::demo_model(), "--device", "cpu", "--threads", "2",
                                     "--num-prompts", "6", "--input-len", "24", "--output-len", "5", "--kv-cache-memory", "16MiB",
                                     "--output-json", out};
    args.insert(args.end(), layout.begin(), layout.end());
    const CommandResult run = run_moeserve(args);
    const std::string label = layout[0] + " " + layout[1] + (layout.size() > 2 ? " ..." : "");
    ASSERT_EQ(run.exit_code, 0) << label << "\n" << run.output;
    const auto result = nlohmann::json::parse(std::ifstream(out));
    EXPECT_EQ(result["total_num_tokens"], 6 * (24 + 5)) << label;
  }
}

}  // namespace
}  // namespace moeserve
