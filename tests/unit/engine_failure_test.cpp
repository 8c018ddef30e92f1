// runtime/engine_failure: a failure reported while serve is shutting down must not call into a
// server that is being destroyed. Clearing the handler waits for a call of it under way, so what
// the handler captured may be destroyed once the clearing returns. Runs in a child process
// (fail_engine ends its process).
#include "runtime/engine_failure.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

using namespace std::chrono_literals;

TEST(EngineFailure, ClearingTheHandlerWaitsForACallUnderWay) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::atomic<bool> entered{false}, finished{false};
    set_engine_failure_handler([&](const std::string&) {
      entered = true;
      std::this_thread::sleep_for(300ms);
      finished = true;
    });
    std::thread failing([] { fail_engine("rank 1's worker was killed"); });
    failing.detach();
    while (!entered) std::this_thread::sleep_for(1ms);
    set_engine_failure_handler(nullptr);  // the shutdown path of serve
    // 42: the handler had returned; 3: it had not; 1 would be fail_engine's own exit.
    const bool reason_kept = engine_failure() == std::optional<std::string>("rank 1's worker was killed");
    _exit(finished && reason_kept ? 42 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);
}

}  // namespace
}  // namespace moeserve
