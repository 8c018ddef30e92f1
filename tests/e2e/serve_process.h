// ServeProcess: `moeserve serve` as a child process for end-to-end tests — started on
// 127.0.0.1 with --port 0, its merged stdout/stderr collected by a reader thread, the bound port
// read from its "serving ... on http://HOST:PORT" log line; stopped with SIGTERM (the exit status
// is returned) or killed when the test ends early.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace moeserve::testing {

class ServeProcess {
 public:
  // args: everything after `moeserve serve`. Throws when the server does not come up in time
  // (with its output in the message).
  explicit ServeProcess(const std::vector<std::string>& args,
                        std::chrono::seconds startup_timeout = std::chrono::seconds(120)) {
    std::vector<std::string> argv{MOESERVE_BINARY, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    start_and_wait(argv, std::regex(R"(serving .* on http://[0-9.]+:([0-9]+))"), startup_timeout);
  }
  // Any other server: argv in full, ready once its output matches `ready`, whose first group is
  // the port it listens on.
  struct Command {
    std::vector<std::string> argv;
    std::regex ready;
  };
  explicit ServeProcess(const Command& command, std::chrono::seconds startup_timeout = std::chrono::seconds(60)) {
    start_and_wait(command.argv, command.ready, startup_timeout);
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string output() const {
    std::lock_guard lock(mutex_);
    return output_;
  }
  // Waits until the output matches `pattern` (searched over everything so far).
  bool wait_for(const std::regex& pattern, std::chrono::milliseconds timeout, std::smatch* match = nullptr) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      std::smatch local;
      const bool found = std::regex_search(output_, match ? *match : local, pattern);
      return found || eof_;
    }) && std::regex_search(output_, pattern);
  }
  // SIGTERM, then the exit status (-1 when it did not exit within the timeout and was killed).
  int terminate(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    ::kill(pid_, SIGTERM);
    return wait_exit(timeout);
  }
  // The exit status once the process ends on its own (-1 when it did not within the timeout and
  // was killed).
  int wait_exit(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (reader_.joinable()) reader_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  // Resident set size of the server in bytes (from /proc).
  long rss_bytes() const {
    FILE* file = std::fopen(("/proc/" + std::to_string(pid_) + "/statm").c_str(), "r");
    if (!file) return -1;
    long pages = 0, resident = 0;
    const int read = std::fscanf(file, "%ld %ld", &pages, &resident);
    std::fclose(file);
    return read == 2 ? resident * ::sysconf(_SC_PAGESIZE) : -1;
  }

 private:
  void start_and_wait(const std::vector<std::string>& argv, const std::regex& ready, std::chrono::seconds timeout) {
    start(argv);
    std::smatch match;
    if (!wait_for(ready, timeout, &match)) throw std::runtime_error(argv[0] + " did not start:\n" + output());
    port_ = std::stoi(match[1]);
  }

  void start(std::vector<std::string> argv_strings) {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(pipe_fds[1], STDOUT_FILENO);
      ::dup2(pipe_fds[1], STDERR_FILENO);
      ::close(pipe_fds[0]);
      ::close(pipe_fds[1]);
      std::vector<char*> argv;
      for (std::string& arg : argv_strings) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(pipe_fds[1]);
    reader_ = std::thread([this, fd = pipe_fds[0]] {
      char buffer[4096];
      ssize_t got;
      while ((got = ::read(fd, buffer, sizeof buffer)) > 0) {
        std::lock_guard lock(mutex_);
        output_.append(buffer, static_cast<size_t>(got));
        changed_.notify_all();
      }
      ::close(fd);
      std::lock_guard lock(mutex_);
      eof_ = true;
      changed_.notify_all();
    });
  }

  pid_t pid_ = -1;
  int port_ = 0;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  bool eof_ = false;
};

// The pids of the processes whose parent is `parent` (from /proc); with `subcommand`, only those
// running `moeserve <subcommand>` (_worker, _api_server).
inline std::vector<pid_t> children_of(pid_t parent, std::string_view subcommand = {}) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    if (!subcommand.empty()) {
      std::ifstream cmdline(entry.path() / "cmdline");
      std::string arg0, arg1;
      std::getline(cmdline, arg0, '\0');
      std::getline(cmdline, arg1, '\0');
      if (arg1 != subcommand) continue;
    }
    children.push_back(std::stoi(name));
  }
  return children;
}

}  // namespace moeserve::testing
