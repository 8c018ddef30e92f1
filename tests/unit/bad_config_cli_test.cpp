// Bad configuration through the built binary (issue 24, item 3): each must end with one clear
// error line and a non-zero exit, never an abort (exit 134), a hang, or a server that starts and
// then fails every request. Each run has a timeout, so a regression that starts the server or
// blocks fails the test instead of hanging it. Cases: a malformed quantization_config (in
// config.json and through --hf-overrides), a --kv-cache-memory beyond the host's memory, a
// negative --threads, a max_position_embeddings of 0 or -1, a --max-model-len above the model's
// limit, --max-num-seqs 0 (CLI11's own check printed a 309-digit bound), an empty --api-key
// (which silently turned authentication off), an empty --served-model-name, and a FIFO in place of a safetensors shard. And a
// fuzz of every value-taking flag of `serve` (read from its --help) with hostile values: each run
// either refuses with a message naming the flag, or starts and stops cleanly on SIGTERM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "plan/startup_check.h"
#include "reference_data.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::AnyOf;
using testing::CommandOptions;
using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;

// Long enough for the tiny model to load on a slow machine; a refusal comes in well under a second.
constexpr double kTimeoutS = 60;

CommandResult run(const std::vector<std::string>& args) {
  return testing::run_moeserve(args, CommandOptions{.timeout_s = kTimeoutS});
}

// `moeserve serve MODEL --port 0 EXTRA...`: the server must refuse to start.
CommandResult serve(const std::string& model, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"serve", model, "--port", "0", "--host", "127.0.0.1", "--threads", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run(args);
}

// A refusal: it ended by itself, with a non-zero exit status that is not a signal's (SIGABRT
// reads 134), without an internal check, and printed `message`.
void expect_refused(const CommandResult& result, const std::string& message) {
  EXPECT_FALSE(result.timed_out) << "still running after " << kTimeoutS << " s:\n" << result.output;
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_GT(result.exit_code, 0) << result.output;
  EXPECT_LT(result.exit_code, 128) << "killed by a signal:\n" << result.output;
  EXPECT_THAT(result.err, HasSubstr(message));
  EXPECT_THAT(result.output, Not(HasSubstr("internal check failed")));
  EXPECT_THAT(result.output, Not(HasSubstr("terminate called")));
}

class BadConfigCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("moeserve_badcfg_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A model directory whose config.json is the demo model's with `patch` merged in.
  std::string model_with_config(const nlohmann::json& patch) {
    nlohmann::json config = nlohmann::json::parse(std::ifstream(testing::demo_model() + "/config.json"));
    config.merge_patch(patch);
    std::ofstream(dir_ / "config.json") << config.dump(2);
    return dir_.string();
  }

  fs::path dir_;
};

TEST_F(BadConfigCli, MalformedQuantizationConfigIsAnErrorNotSigabrt) {
  const std::vector<nlohmann::json> malformed = {
      "fp8", 5, nlohmann::json::array({"fp8"}), {{"weight_block_size", {128, 128}}},
      {{"quant_method", "fp8"}, {"weight_block_size", {"128", 128}}}, {{"quant_method", 8}}};
  for (const nlohmann::json& quant : malformed) {
    SCOPED_TRACE(quant.dump());
    const nlohmann::json patch = {{"quantization_config", quant}};
    expect_refused(serve(testing::demo_model(), {"--hf-overrides", patch.dump()}), "quantization_config");
    expect_refused(serve(model_with_config(patch), {}), "quantization_config");
  }
  const nlohmann::json string_quant = {{"quantization_config", "fp8"}};
  expect_refused(serve(testing::demo_model(), {"--hf-overrides", string_quant.dump()}),
                 "moeserve: error: " + testing::demo_model() +
                     "/config.json: 'quantization_config' must be an object with a quant_method, got \"fp8\"");
}

TEST_F(BadConfigCli, NonPositiveMaxPositionEmbeddingsIsRefusedAtStartUp) {
  for (const int bad : {0, -1}) {
    const nlohmann::json patch = {{"max_position_embeddings", bad}};
    const std::string message = "'max_position_embeddings' must be positive, got " + std::to_string(bad);
    expect_refused(serve(model_with_config(patch), {}), message);
    expect_refused(serve(testing::demo_model(), {"--hf-overrides", patch.dump()}), message);
  }
}

TEST_F(BadConfigCli, MaxModelLenAboveTheModelsLimitIsRefused) {
  // vLLM refuses a max_model_len above the derived one; the demo model's limit is 4096.
  expect_refused(serve(testing::demo_model(), {"--max-model-len", "8192"}),
                 "moeserve: error: --max-model-len 8192 is greater than the model's max_position_embeddings 4096");
}

TEST_F(BadConfigCli, KvCacheBeyondHostMemoryIsAnErrorNotAnInternalCheck) {
  // 1 MiB-token blocks at the block-count cap come to 32 TiB: more than any test host has.
  const CommandResult result =
      serve(testing::demo_model(), {"--kv-cache-memory", "100000GiB", "--block-size", "1024"});
  expect_refused(result, "moeserve: error: --kv-cache-memory: the KV cache needs");
  EXPECT_THAT(result.err, AllOf(HasSubstr("GiB of memory available"), HasSubstr("lower --kv-cache-memory below")));
}

TEST(HostMemoryCheck, SaysHowMuchThereIsAndWhatToLower) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  const plan::HostMemory host{.total_bytes = 64 * kGiB, .available_bytes = 48 * kGiB};
  EXPECT_TRUE(plan::check_cpu_kv_fits_host(48 * kGiB, 1, host).ok());
  const Status refused = plan::check_cpu_kv_fits_host(100 * kGiB, 1, host);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "--kv-cache-memory: the KV cache needs 100.0 GiB but this machine has 48.0 GiB of memory available "
            "(64.0 GiB total): lower --kv-cache-memory below 48.0 GiB");
  // With data parallelism every replica has its own cache of --kv-cache-memory.
  const Status replicas = plan::check_cpu_kv_fits_host(60 * kGiB, 2, host);
  ASSERT_FALSE(replicas.ok());
  EXPECT_THAT(replicas.error().message, AllOf(HasSubstr("60.0 GiB (2 data-parallel replicas)"),
                                              HasSubstr("below 24.0 GiB (it is per replica)")));
  // Unknown host memory (no /proc/meminfo): nothing to check against.
  EXPECT_TRUE(plan::check_cpu_kv_fits_host(100 * kGiB, 1, plan::HostMemory{}).ok());
  // The CPU's bf16 weight copies count too, with the KV cache.
  EXPECT_TRUE(plan::check_cpu_weights_fit_host(40 * kGiB, 8 * kGiB, host).ok());
  const Status weights = plan::check_cpu_weights_fit_host(1250 * kGiB, 8 * kGiB, host);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.error().message,
            "the CPU backend needs 1250.0 GiB of memory for the weights (packed as bf16) and 8.0 GiB for the KV cache, "
            "but this machine has 48.0 GiB available (64.0 GiB total): serve the model on GPUs (--device cuda; "
            "`moeserve plan` says which layout fits) or on a machine with more memory");
  EXPECT_TRUE(plan::check_cpu_weights_fit_host(1250 * kGiB, 8 * kGiB, plan::HostMemory{}).ok());
  const plan::HostMemory here = plan::read_host_memory();
  EXPECT_GT(here.total_bytes, 0);
  EXPECT_GT(here.available_bytes, 0);
  EXPECT_LE(here.available_bytes, here.total_bytes);
}

TEST_F(BadConfigCli, NegativeThreadsAreRefusedByName) {
  expect_refused(serve(testing::demo_model(), {"--threads", "-1"}),
                 "--threads: must be between 0 (all cores) and 1024, got -1");
  expect_refused(run({"generate", testing::demo_model(), "--prompt", "In the beginning", "--threads", "-1"}),
                 "--threads: must be between 0 (all cores) and 1024, got -1");
  expect_refused(serve(testing::demo_model(), {"--threads", "100000"}), "--threads: must be between");
}

TEST_F(BadConfigCli, ZeroSizesGetAPlainMessage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--max-num-seqs", "0"}, "--max-num-seqs: must be a positive integer, got 0"},
      {{"--max-num-batched-tokens", "-5"}, "--max-num-batched-tokens: must be a positive integer, got -5"},
      {{"--max-model-len", "-1"}, "--max-model-len: must be a non-negative integer, got -1"},
      {{"--max-waiting-requests", "-1"}, "--max-waiting-requests: must be a non-negative integer, got -1"},
      {{"-tp", "0"}, "--tensor-parallel-size: must be a positive integer, got 0"},
      {{"-dp", "0"}, "--data-parallel-size: must be a positive integer, got 0"},
  };
  for (const auto& [flags, message] : cases) {
    const CommandResult result = serve(testing::demo_model(), flags);
    expect_refused(result, message);
    EXPECT_THAT(result.output, Not(HasSubstr("179769313486231570"))) << "CLI11's bound printed in full";
  }
  expect_refused(run({"generate", testing::demo_model(), "--prompt", "x", "--temperature", "-1"}),
                 "--temperature: must be a finite number >= 0, got -1");
}

TEST_F(BadConfigCli, EmptyApiKeyIsRefusedNotAuthenticationOff) {
  for (const std::string key : {"", "  "}) {
    expect_refused(serve(testing::demo_model(), {"--api-key", key}),
                   "--api-key: must not be empty (an empty key would turn authentication off; leave out --api-key "
                   "to serve without one)");
  }
}

// An empty served model name was taken: /v1/models then listed a model called "".
TEST_F(BadConfigCli, EmptyServedModelNameIsRefused) {
  const std::string message =
      "--served-model-name: must not be empty (leave out --served-model-name to serve the model under its path)";
  for (const std::vector<std::string>& names : {std::vector<std::string>{""}, {" "}, {"kjv", ""}, {"", "kjv"}}) {
    std::vector<std::string> flags;
    for (const std::string& name : names) flags.insert(flags.end(), {"--served-model-name", name});
    expect_refused(serve(testing::demo_model(), flags), message);
  }
}

TEST_F(BadConfigCli, FifoInPlaceOfAShardIsRefusedNotAHang) {
  // The demo model's files, linked, except its second shard: a named pipe nothing writes to.
  const std::string fifo_name = "model-00002-of-00003.safetensors";
  for (const auto& entry : fs::directory_iterator(testing::demo_model())) {
    if (entry.path().filename() == fifo_name) continue;
    fs::create_symlink(fs::absolute(entry.path()), dir_ / entry.path().filename());
  }
  ASSERT_EQ(::mkfifo((dir_ / fifo_name).c_str(), 0600), 0);
  expect_refused(serve(dir_.string(), {}),
                 "moeserve: error: " + (dir_ / fifo_name).string() + ": not a regular file");
}

// `moeserve serve ARGS...` run until it ends by itself (a refusal) or logs that it is serving
// (the arguments were valid), when it gets SIGTERM. exit_code -1: neither within kTimeoutS.
struct ServeOutcome {
  bool started = false;
  int exit_code = -1;
  std::string output;
};
ServeOutcome serve_or_refuse(std::vector<std::string> args) {
  args.insert(args.begin(), {MOESERVE_BINARY, "serve"});
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ServeOutcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(kTimeoutS);
  bool ended = false;
  while (!ended) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd events{fds[0], POLLIN, 0};
    if (::poll(&events, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[4096];
    const ssize_t got = ::read(fds[0], buffer, sizeof buffer);
    if (got <= 0) {
      ended = true;  // the output closed: the process has ended
      break;
    }
    outcome.output.append(buffer, static_cast<size_t>(got));
    if (!outcome.started && std::regex_search(outcome.output, std::regex("serving .* on http://"))) {
      outcome.started = true;
      ::kill(pid, SIGTERM);
    }
  }
  if (!ended) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  if (ended) outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

// Every flag of `serve` that takes a value, from its --help ("  --name TYPE" or "  -x,--name TYPE").
std::vector<std::string> serve_value_flags(std::set<std::string>* numeric) {
  const CommandResult help = run({"serve", "--help"});
  std::vector<std::string> flags;
  const std::regex option(R"(^  (?:-\w+,)?(--[a-z0-9-]+) (TEXT|INT|UINT|FLOAT))");
  std::istringstream lines(help.out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (!std::regex_search(line, match, option)) continue;
    flags.push_back(match[1]);
    if (match[2] != "TEXT") numeric->insert(match[1]);
  }
  return flags;
}

// Start-up validation, fuzzed (issue 24: "every flag and config field is range-checked, with a
// clear one-line message and a non-zero exit; no abort() is reachable from user input"): every
// value-taking flag of `serve` with each hostile value. A refusal ends by itself with an exit
// status of 1-127, names the flag, and shows no internal check or uncaught exception; a value
// that happens to be valid starts the server, which then exits 0 on SIGTERM; a numeric flag
// (INT/UINT/FLOAT in --help) refuses NaN, infinities and non-numbers. Nothing hangs.
TEST_F(BadConfigCli, EveryServeFlagWithHostileValuesRefusesOrServesCleanly) {
  std::set<std::string> numeric;
  const std::vector<std::string> flags = serve_value_flags(&numeric);
  ASSERT_GE(numeric.size(), 10u);
  ASSERT_GE(flags.size(), 30u) << "serve --help lists fewer value flags than expected";
  const std::vector<std::string> values = {
      "-1", "0", "1e400", "nan", "inf", "-inf", "abc", "", "99999999999999999999", "1.5", "0x10", "{", "\xff\xfe"};
  // What the runs need to be quick and private, unless the flag itself is the one fuzzed.
  const std::vector<std::pair<std::string, std::string>> base = {
      {"--port", "0"}, {"--host", "127.0.0.1"}, {"--threads", "1"}, {"--kv-cache-memory", "64MiB"}};
  int started = 0, refused = 0;
  for (const std::string& flag : flags) {
    for (const std::string& value : values) {
      std::vector<std::string> args = {testing::demo_model(), flag, value};
      for (const auto& [name, base_value] : base) {
        if (name != flag) args.insert(args.end(), {name, base_value});
      }
      const ServeOutcome outcome = serve_or_refuse(args);
      const std::string what = flag + " '" + value + "'";
      ASSERT_NE(outcome.exit_code, -1) << what << ": neither refused nor served within " << kTimeoutS << " s:\n"
                                       << outcome.output;
      EXPECT_LT(outcome.exit_code, 128) << what << ": killed by a signal:\n" << outcome.output;
      EXPECT_THAT(outcome.output, Not(HasSubstr("internal check failed"))) << what;
      EXPECT_THAT(outcome.output, Not(HasSubstr("terminate called"))) << what;
      // A numeric flag never takes these: NaN slips past range checks written as comparisons.
      static const std::set<std::string> never_numeric = {"nan", "inf", "-inf", "1e400", "abc", "", "{", "\xff\xfe"};
      if (numeric.count(flag) && never_numeric.count(value)) {
        EXPECT_FALSE(outcome.started) << what << ": a numeric flag accepted it";
      }
      // Names and keys are never empty: an empty key turns authentication off, an empty name is
      // listed as a model called "".
      static const std::set<std::string> never_empty = {"--served-model-name", "--api-key"};
      if (never_empty.count(flag) && value.empty()) EXPECT_FALSE(outcome.started) << what << ": taken";
      if (outcome.started) {
        EXPECT_EQ(outcome.exit_code, 0) << what << ": started, then did not stop cleanly:\n" << outcome.output;
        ++started;
        if (std::getenv("MOESERVE_FUZZ_VERBOSE")) std::printf("served: %s\n", what.c_str());
      } else {
        EXPECT_GT(outcome.exit_code, 0) << what;
        // The flag by name (the parallel sizes are named in words by the model's own check).
        const std::string name = flag == "--tensor-parallel-size" ? "tensor-parallel size"
                                 : flag == "--data-parallel-size" ? "data-parallel size"
                                                                  : flag;
        EXPECT_THAT(outcome.output, AnyOf(HasSubstr(flag), HasSubstr(name)))
            << what << ": the refusal does not name the flag";
        ++refused;
      }
    }
  }
  std::printf("%zu flags x %zu values: %d refused, %d served\n", flags.size(), values.size(), refused, started);
}

}  // namespace
}  // namespace moeserve
