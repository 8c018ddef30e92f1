// PeerMonitor: whether the one peer of a bound ZeroMQ PAIR socket (a rank worker on another node)
// has connected, and whether it has gone since. Built on zmq_socket_monitor: the ZMTP handshake
// completing is "connected"; a disconnect after it is "gone" — the worker's process ended (its
// connection closed), or its node vanished without closing it, which the heartbeats set here on
// the watched socket catch within kHeartbeatTimeout. Not thread-safe: one thread reads it.
#pragma once

#include <chrono>
#include <string>

#include <zmq.hpp>

namespace moeserve::mp {

class PeerMonitor {
 public:
  static constexpr std::chrono::milliseconds kHeartbeatInterval{1000};
  static constexpr std::chrono::milliseconds kHeartbeatTimeout{5000};

  // Watches `socket` (before it is bound or its endpoint is given out, so no event is missed);
  // `name` makes the monitor's inproc address unique within `context`.
  PeerMonitor(zmq::context_t& context, zmq::socket_t& socket, const std::string& name);

  // Reads the events that have arrived, without waiting.
  void update();
  bool connected() const { return connected_; }
  bool gone() const { return gone_; }

 private:
  zmq::socket_t events_;
  bool connected_ = false;
  bool gone_ = false;
};

}  // namespace moeserve::mp
