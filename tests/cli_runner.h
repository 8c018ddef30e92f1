// Test helper: runs a command line (an argv vector, no shell, so arguments need
// no quoting) as a child process and captures its stdout and stderr separately,
// plus its exit status. Used by the CLI tests (plan, tokenize, chat-template)
// and by anything that runs the built binary. Optional stdin text, environment
// additions and a timeout (the child is killed with SIGKILL when it runs past
// it; `timed_out` says so).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace moeserve::testing {

struct CommandResult {
  int exit_code = -1; // the exit status; 128 + signal when a signal ended it;
                      // -1 if it never ran
  std::string out;    // stdout
  std::string err;    // stderr
  std::string output; // stdout then stderr (for messages and substring checks)
  bool timed_out = false;
};

struct CommandOptions {
  std::string stdin_text; // written to the child's stdin, then closed
  std::vector<std::pair<std::string, std::string>>
      env;              // added to (or replacing in) the environment
  double timeout_s = 0; // 0: no limit
};

namespace detail {
inline void close_fd(int &fd) {
  if (fd >= 0)
    close(fd);
  fd = -1;
}
} // namespace detail

inline CommandResult run_command(const std::vector<std::string> &argv,
                                 const CommandOptions &options = {}) {
  CommandResult result;
  if (argv.empty())
    return result;
  int out_pipe[2], err_pipe[2], in_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0 || pipe(in_pipe) != 0)
    return result;
  const pid_t pid = fork();
  if (pid < 0)
    return result;
  if (pid == 0) {
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1],
                   err_pipe[0], err_pipe[1]})
      close(fd);
    for (const auto &[name, value] : options.env)
      setenv(name.c_str(), value.c_str(), 1);
    std::vector<std::string> copies = argv;
    std::vector<char *> args;
    for (auto &arg : copies)
      args.push_back(arg.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  int in_fd = in_pipe[1], out_fd = out_pipe[0], err_fd = err_pipe[0];
  signal(
      SIGPIPE,
      SIG_IGN); // a child that exits without reading its stdin must not kill us
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (options.stdin_text.empty())
    detail::close_fd(in_fd);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options.timeout_s);
  while (out_fd >= 0 || err_fd >= 0) {
    pollfd fds[3] = {
        {out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
    int wait_ms = -1;
    if (options.timeout_s > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        kill(pid, SIGKILL);
        result.timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(left.count());
    }
    if (poll(fds, 3, wait_ms) < 0)
      break;
    char buffer[65536];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      const ssize_t got = read(fds[i].fd, buffer, sizeof(buffer));
      if (got > 0) {
        (i == 0 ? result.out : result.err)
            .append(buffer, static_cast<size_t>(got));
      } else {
        detail::close_fd(i == 0 ? out_fd : err_fd);
      }
    }
    if (in_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t put = write(in_fd, options.stdin_text.data() + written,
                                options.stdin_text.size() - written);
      if (put > 0)
        written += static_cast<size_t>(put);
      if (put < 0 || written == options.stdin_text.size())
        detail::close_fd(in_fd);
    }
  }
  detail::close_fd(in_fd);
  detail::close_fd(out_fd);
  detail::close_fd(err_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                     : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                           : -1;
  result.output = result.out + result.err;
  return result;
}

// The built moeserve binary (MOESERVE_BINARY) with `args`.
inline CommandResult run_moeserve(const std::vector<std::string> &args,
                                  const CommandOptions &options = {}) {
  std::vector<std::string> argv{MOESERVE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, options);
}

} // namespace moeserve::testing
