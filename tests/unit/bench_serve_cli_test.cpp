// `moeserve bench serve` against the real HTTP server over a fake engine on loopback: its progress
// bar (a line redrawn with \r) goes to a terminal only; with stderr a pipe or a log file there is
// none, and the summary is the same either way.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <gtest/gtest.h>

#include "cli_runner.h"
#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

std::vector<std::string> bench_args(int port) {
  return {"bench", "serve", "--model", kModelDir, "--base-url", "http://127.0.0.1:" + std::to_string(port),
          "--num-prompts", "4", "--random-input-len", "4", "--random-output-len", "2", "--ignore-eos"};
}

// Runs `moeserve ARGS...` with stderr on a pseudo-terminal and stdout on /dev/null; returns
// {exit status, what the terminal received}.
std::pair<int, std::string> run_with_stderr_on_a_tty(const std::vector<std::string>& args) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) return {-1, "no pseudo-terminal"};
  const std::string slave_name = ::ptsname(master);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int slave = ::open(slave_name.c_str(), O_RDWR | O_NOCTTY);
    const int null = ::open("/dev/null", O_RDWR);
    if (slave < 0 || null < 0) ::_exit(126);
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(slave, STDERR_FILENO);
    ::close(master);
    std::vector<std::string> copies{MOESERVE_BINARY};
    copies.insert(copies.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : copies) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::string received;
  char buffer[4096];
  while (true) {
    const ssize_t got = ::read(master, buffer, sizeof buffer);
    if (got > 0) {
      received.append(buffer, static_cast<size_t>(got));
    } else if (got < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO: the child closed the terminal's last slave descriptor
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), received};
}

TEST(BenchServeCli, NoProgressBarWhenStderrIsNotATerminal) {
  ServerHarness harness;
  const CommandResult result = run_moeserve(bench_args(harness.port()), {.timeout_s = 120});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.out.find("Successful requests:                     4"), std::string::npos) << result.out;
  EXPECT_EQ(result.err.find('\r'), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("4/4"), std::string::npos) << result.err;
}

TEST(BenchServeCli, ProgressBarOnATerminal) {
  ServerHarness harness;
  const auto [status, terminal] = run_with_stderr_on_a_tty(bench_args(harness.port()));
  ASSERT_EQ(status, 0) << terminal;
  EXPECT_NE(terminal.find("\r[########################################] 4/4"), std::string::npos) << terminal;
  // --disable-tqdm still turns it off there.
  std::vector<std::string> quiet = bench_args(harness.port());
  quiet.push_back("--disable-tqdm");
  const auto [quiet_status, quiet_terminal] = run_with_stderr_on_a_tty(quiet);
  ASSERT_EQ(quiet_status, 0) << quiet_terminal;
  EXPECT_EQ(quiet_terminal.find("4/4"), std::string::npos) << quiet_terminal;
}

// Against a server started with --api-key, `bench serve` sends $OPENAI_API_KEY as a Bearer token
// (as vLLM's bench does): with it every request succeeds; without it the server's 401 is what the
// run reports, never a success.
TEST(BenchServeCli, SendsOpenAiApiKeyAsABearerToken) {
  ServerOptions options;
  options.api_key = "bench-sekret";
  ServerHarness harness(options);
  std::vector<std::string> args = bench_args(harness.port());
  args.push_back("--disable-tqdm");
  const CommandResult with_key = run_moeserve(args, {.env = {{"OPENAI_API_KEY", "bench-sekret"}}, .timeout_s = 120});
  ASSERT_EQ(with_key.exit_code, 0) << with_key.output;
  EXPECT_NE(with_key.out.find("Successful requests:                     4"), std::string::npos) << with_key.out;
  const CommandResult wrong_key = run_moeserve(args, {.env = {{"OPENAI_API_KEY", "wrong"}}, .timeout_s = 120});
  EXPECT_EQ(wrong_key.out.find("Successful requests:                     4"), std::string::npos) << wrong_key.output;
  EXPECT_NE(wrong_key.output.find("401"), std::string::npos) << wrong_key.output;
}

}  // namespace
}  // namespace moeserve::testing
