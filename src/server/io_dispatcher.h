// IoDispatcher: how engine-thread callbacks reach the server's io thread. Callbacks may still
// fire after the server has shut down (the engine finishes aborted requests later), so they post
// through this shared object, which drops work once closed instead of touching a destroyed
// io_context.
#pragma once

#include <functional>
#include <mutex>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace moeserve {

class IoDispatcher {
 public:
  explicit IoDispatcher(boost::asio::io_context& io) : io_(&io) {}

  // Runs `task` on the io thread; false (task dropped) once closed.
  bool post(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    if (io_ == nullptr) return false;
    boost::asio::post(*io_, std::move(task));
    return true;
  }

  void close() {
    std::lock_guard lock(mutex_);
    io_ = nullptr;
  }

 private:
  std::mutex mutex_;
  boost::asio::io_context* io_;  // null once closed
};

}  // namespace moeserve
