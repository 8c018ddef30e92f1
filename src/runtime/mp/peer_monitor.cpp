#include "runtime/mp/peer_monitor.h"

#include <cstdint>
#include <cstring>

namespace moeserve::mp {

PeerMonitor::PeerMonitor(zmq::context_t& context, zmq::socket_t& socket, const std::string& name)
    : events_(context, zmq::socket_type::pair) {
  socket.set(zmq::sockopt::heartbeat_ivl, static_cast<int>(kHeartbeatInterval.count()));
  socket.set(zmq::sockopt::heartbeat_timeout, static_cast<int>(kHeartbeatTimeout.count()));
  const std::string address = "inproc://moeserve-monitor-" + name;
  if (zmq_socket_monitor(socket.handle(), address.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) !=
      0) {
    throw zmq::error_t();
  }
  events_.set(zmq::sockopt::linger, 0);
  events_.connect(address);
}

void PeerMonitor::update() {
  for (;;) {
    // An event is two frames: u16 event id + u32 value, then the peer's endpoint.
    zmq::message_t head;
    if (!events_.recv(head, zmq::recv_flags::dontwait)) return;
    uint16_t event = 0;
    if (head.size() >= sizeof event) std::memcpy(&event, head.data(), sizeof event);
    while (head.more()) {
      zmq::message_t rest;
      if (!events_.recv(rest, zmq::recv_flags::dontwait)) break;
      head.move(rest);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) connected_ = true;
    if (event == ZMQ_EVENT_DISCONNECTED && connected_) gone_ = true;
  }
}

}  // namespace moeserve::mp
