#include "runtime/engine_failure.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

namespace moeserve {
namespace {

std::mutex& state_mutex() {
  static std::mutex mutex;
  return mutex;
}
EngineFailureHandler& handler() {
  static EngineFailureHandler instance;
  return instance;
}
std::optional<std::string>& reason() {
  static std::optional<std::string> instance;
  return instance;
}
// Handler calls under way, and their end: a handler is not replaced while one runs.
int& calls_running() {
  static int count = 0;
  return count;
}
std::condition_variable& calls_done() {
  static std::condition_variable done;
  return done;
}

}  // namespace

void set_engine_failure_handler(EngineFailureHandler next) {
  std::unique_lock lock(state_mutex());
  calls_done().wait(lock, [] { return calls_running() == 0; });
  handler() = std::move(next);
}

std::optional<std::string> engine_failure() {
  std::lock_guard lock(state_mutex());
  return reason();
}

void fail_engine(const std::string& why) {
  EngineFailureHandler notify;
  {
    std::lock_guard lock(state_mutex());
    if (!reason()) reason() = why;
    notify = handler();
    if (notify) ++calls_running();
  }
  if (notify) {
    notify(why);
    {
      std::lock_guard lock(state_mutex());
      --calls_running();
    }
    calls_done().notify_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(kEngineFailureGraceMs));
  }
  spdlog::default_logger()->flush();
  std::_Exit(1);
}

}  // namespace moeserve
