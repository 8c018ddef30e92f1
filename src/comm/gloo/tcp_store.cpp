#include "comm/gloo/tcp_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "comm/communicator.h"

namespace moeserve {

// Wire format, both directions, integers little-endian as the host writes them (all ranks run
// the same build on x86-64/arm64): request = op (1 byte: 'S' set, 'G' get), key length (u32),
// key, and for a set the value length (u64) and value; reply to a set = 1 byte (1), to a get =
// found (1 byte) then, when found, the value length (u64) and value.
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMaxKeyBytes = 4096;
constexpr uint64_t kMaxValueBytes = uint64_t{64} << 20;

std::string errno_text(int error) { return std::strerror(error); }

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

// Resolves address:port for a stream socket (passive: for bind).
Result<addrinfo*> resolve(const std::string& address, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  const int rv = getaddrinfo(address.c_str(), service.c_str(), &hints, &result);
  if (rv != 0) return make_error("cannot resolve '{}': {}", address, gai_strerror(rv));
  return result;
}

std::string format_endpoint(const std::string& address, int port) {
  return address.find(':') != std::string::npos ? fmt::format("[{}]:{}", address, port)
                                                : fmt::format("{}:{}", address, port);
}

// Waits until fd is ready for `events` or the deadline passes; false on timeout.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{.fd = fd, .events = events, .revents = 0};
    const int rv = ::poll(&entry, 1, static_cast<int>(remaining(deadline).count()));
    if (rv > 0) return true;
    if (rv == 0) return false;
    if (errno != EINTR) return true;  // let the following send/recv report the error
  }
}

// Sends/receives exactly n bytes before the deadline. An empty string on success, else why not.
std::string send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_ready(fd, POLLOUT, deadline)) return "timed out sending";
    const ssize_t rv = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (rv < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_text(errno);
    }
    p += rv;
    n -= static_cast<size_t>(rv);
  }
  return {};
}

std::string recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_ready(fd, POLLIN, deadline)) return "timed out waiting for the reply";
    const ssize_t rv = ::recv(fd, p, n, MSG_DONTWAIT);
    if (rv == 0) return "connection closed";
    if (rv < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_text(errno);
    }
    p += rv;
    n -= static_cast<size_t>(rv);
  }
  return {};
}

// Connects a non-blocking socket to one resolved address before the deadline; -1 and *error
// on failure.
int connect_one(const addrinfo* ai, Clock::time_point deadline, std::string* error) {
  const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    *error = errno_text(errno);
    return -1;
  }
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      *error = errno_text(errno);
      ::close(fd);
      return -1;
    }
    if (!wait_ready(fd, POLLOUT, deadline)) {
      *error = "connect timed out";
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error != 0) {
      *error = errno_text(so_error);
      ::close(fd);
      return -1;
    }
  }
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  return fd;
}

std::string local_address_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, text, sizeof(text));
  }
  return text;
}

}  // namespace

// The server: one thread polling the listening socket, the clients and an eventfd that the
// destructor signals. Requests are small (gloo's rendezvous exchanges addresses), so a client's
// bytes are buffered until a whole request is in and the reply is sent before moving on.
class TcpStoreServer {
 public:
  static Result<std::unique_ptr<TcpStoreServer>> start(const std::string& address, int port) {
    MS_ASSIGN_OR_RETURN(addrinfo * list, resolve(address, port, /*passive=*/true));
    std::string error = "no address";
    int fd = -1;
    for (const addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) {
        error = errno_text(errno);
        continue;
      }
      const int on = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
        error = errno_text(errno);
        ::close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(list);
    if (fd < 0) return make_error("cannot listen on {}: {}", format_endpoint(address, port), error);
    auto server = std::unique_ptr<TcpStoreServer>(new TcpStoreServer());
    server->listen_fd_ = fd;
    server->wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (server->wake_fd_ < 0) return make_error("eventfd: {}", errno_text(errno));
    server->thread_ = std::thread([raw = server.get()] { raw->run(); });
    return server;
  }

  ~TcpStoreServer() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t rv = ::write(wake_fd_, &one, sizeof(one));
    if (thread_.joinable()) thread_.join();
    for (auto& client : clients_) ::close(client.fd);
    ::close(listen_fd_);
    ::close(wake_fd_);
  }

 private:
  struct Client {
    int fd;
    std::string in;  // bytes received, not yet a whole request
  };

  TcpStoreServer() = default;

  void run() {
    std::vector<pollfd> fds;
    for (;;) {
      fds.clear();
      fds.push_back({.fd = wake_fd_, .events = POLLIN, .revents = 0});
      fds.push_back({.fd = listen_fd_, .events = POLLIN, .revents = 0});
      for (const auto& client : clients_) fds.push_back({.fd = client.fd, .events = POLLIN, .revents = 0});
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      // Serve the clients polled (indices 2…), dropping the ones that closed or misbehaved.
      std::vector<bool> keep(clients_.size(), true);
      for (size_t i = 0; i < clients_.size(); ++i) {
        if (fds[i + 2].revents != 0) keep[i] = serve(clients_[i]);
      }
      std::vector<Client> kept;
      for (size_t i = 0; i < clients_.size(); ++i) {
        if (keep[i]) {
          kept.push_back(std::move(clients_[i]));
        } else {
          ::close(clients_[i].fd);
        }
      }
      clients_ = std::move(kept);
      if (fds[1].revents & POLLIN) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          const int on = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
          clients_.push_back({.fd = fd, .in = {}});
        }
      }
    }
  }

  // Reads what is there and answers every whole request; false to drop the client.
  bool serve(Client& client) {
    char chunk[65536];
    const ssize_t n = ::recv(client.fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    client.in.append(chunk, static_cast<size_t>(n));
    for (;;) {
      const std::string& in = client.in;
      if (in.size() < 5) return true;
      const char op = in[0];
      uint32_t key_bytes;
      std::memcpy(&key_bytes, in.data() + 1, 4);
      if ((op != 'S' && op != 'G') || key_bytes > kMaxKeyBytes) return false;
      size_t used = 5 + key_bytes;
      if (in.size() < used) return true;
      std::string key = in.substr(5, key_bytes);
      std::string reply;
      if (op == 'S') {
        if (in.size() < used + 8) return true;
        uint64_t value_bytes;
        std::memcpy(&value_bytes, in.data() + used, 8);
        if (value_bytes > kMaxValueBytes) return false;
        used += 8;
        if (in.size() < used + value_bytes) return true;
        values_[key].assign(in.data() + used, in.data() + used + value_bytes);
        used += value_bytes;
        reply.push_back(1);
      } else {
        auto it = values_.find(key);
        reply.push_back(it != values_.end() ? 1 : 0);
        if (it != values_.end()) {
          const uint64_t value_bytes = it->second.size();
          reply.append(reinterpret_cast<const char*>(&value_bytes), 8);
          reply.append(it->second.data(), it->second.size());
        }
      }
      client.in.erase(0, used);
      // A client that does not read its reply within 10 s is dropped (it would stall the rest).
      if (!send_all(client.fd, reply.data(), reply.size(), Clock::now() + std::chrono::seconds(10)).empty()) {
        return false;
      }
    }
  }

  int listen_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::vector<Client> clients_;
  std::map<std::string, std::vector<char>> values_;
};

Result<std::shared_ptr<TcpStore>> TcpStore::connect(const TcpStoreOptions& options) {
  if (options.port <= 0 || options.port > 65535) return make_error("invalid store port {}", options.port);
  auto store = std::shared_ptr<TcpStore>(new TcpStore());
  store->endpoint_ = format_endpoint(options.address, options.port);
  store->timeout_ = options.timeout;
  if (options.host) {
    auto server = TcpStoreServer::start(options.address, options.port);
    if (!server.ok()) return server.error().with_context("hosting the rendezvous store");
    store->server_ = std::move(server).value();
  }
  // The host may not be up yet: retry refused/unreachable connects until the deadline.
  const auto deadline = Clock::now() + options.timeout;
  std::string error;
  for (;;) {
    MS_ASSIGN_OR_RETURN(addrinfo * list, resolve(options.address, options.port, /*passive=*/false));
    for (const addrinfo* ai = list; ai != nullptr && store->fd_ < 0; ai = ai->ai_next) {
      store->fd_ = connect_one(ai, deadline, &error);
    }
    freeaddrinfo(list);
    if (store->fd_ >= 0) break;
    if (Clock::now() >= deadline) {
      return make_error("cannot reach the rendezvous store at {} within {} ms ({}); is rank 0 running?",
                        store->endpoint_, options.timeout.count(), error);
    }
    std::this_thread::sleep_for(std::min(std::chrono::milliseconds(50), remaining(deadline)));
  }
  store->local_address_ = local_address_of(store->fd_);
  return store;
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) ::close(fd_);
  server_.reset();
}

void TcpStore::request(char op, const std::string& key, const std::vector<char>* value, bool* found,
                       std::vector<char>* reply_value) {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) throw CommError(fmt::format("rendezvous store {}: connection lost earlier", endpoint_));
  std::string message(1, op);
  const auto key_bytes = static_cast<uint32_t>(key.size());
  message.append(reinterpret_cast<const char*>(&key_bytes), 4);
  message.append(key);
  if (value != nullptr) {
    const uint64_t value_bytes = value->size();
    message.append(reinterpret_cast<const char*>(&value_bytes), 8);
    message.append(value->data(), value->size());
  }
  const auto deadline = Clock::now() + timeout_;
  std::string error = send_all(fd_, message.data(), message.size(), deadline);
  char status = 0;
  if (error.empty()) error = recv_all(fd_, &status, 1, deadline);
  if (error.empty() && op == 'G' && status == 1) {
    uint64_t value_bytes = 0;
    error = recv_all(fd_, &value_bytes, 8, deadline);
    if (error.empty() && value_bytes > kMaxValueBytes) error = "reply too large";
    if (error.empty()) {
      reply_value->resize(value_bytes);
      error = recv_all(fd_, reply_value->data(), value_bytes, deadline);
    }
  }
  if (!error.empty()) {
    ::close(fd_);
    fd_ = -1;
    throw CommError(fmt::format("rendezvous store {} (hosted by rank 0): {} for key '{}': {}", endpoint_,
                                op == 'S' ? "set" : "get", key, error));
  }
  if (found != nullptr) *found = status == 1;
}

void TcpStore::set(const std::string& key, const std::vector<char>& data) {
  if (key.size() > kMaxKeyBytes || data.size() > kMaxValueBytes) {
    throw CommError(fmt::format("rendezvous store {}: key '{}' or its value too large", endpoint_, key));
  }
  request('S', key, &data, nullptr, nullptr);
}

bool TcpStore::check(const std::string& key) {
  bool found = false;
  std::vector<char> ignored;
  request('G', key, nullptr, &found, &ignored);
  return found;
}

std::vector<char> TcpStore::get(const std::string& key) {
  const auto deadline = Clock::now() + timeout_;
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    bool found = false;
    std::vector<char> value;
    request('G', key, nullptr, &found, &value);
    if (found) return value;
    if (Clock::now() >= deadline) {
      throw CommError(
          fmt::format("rendezvous store {}: key '{}' not set within {} ms", endpoint_, key, timeout_.count()));
    }
    std::this_thread::sleep_for(std::min(pause, remaining(deadline)));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

void TcpStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void TcpStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  for (const std::string& key : keys) {
    while (!check(key)) {
      if (Clock::now() >= deadline) {
        throw CommError(
            fmt::format("rendezvous store {}: key '{}' not set within {} ms", endpoint_, key, timeout.count()));
      }
      std::this_thread::sleep_for(std::min(pause, remaining(deadline)));
      pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
  }
}

}  // namespace moeserve
