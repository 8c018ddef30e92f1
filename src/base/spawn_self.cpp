#include "base/spawn_self.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

namespace moeserve {

Result<pid_t> spawn_self(std::string_view subcommand, const std::string& spec, int death_signal,
                         std::string_view what) {
  std::error_code error;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) return make_error("{}: cannot find this binary: {}", what, error.message());
  std::string arg0 = "moeserve", arg1(subcommand), arg2 = spec;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return make_error("{}: fork failed: {}", what, std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    execv(self.c_str(), argv);
    _exit(127);
  }
  return pid;
}

}  // namespace moeserve
