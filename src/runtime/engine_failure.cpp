#include "runtime/engine_failure.h"

#include <chrono>
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

}  // namespace

void set_engine_failure_handler(EngineFailureHandler next) {
  std::lock_guard lock(state_mutex());
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
  }
  if (notify) {
    notify(why);
    std::this_thread::sleep_for(std::chrono::milliseconds(kEngineFailureGraceMs));
  }
  spdlog::default_logger()->flush();
  std::_Exit(1);
}

}  // namespace moeserve
