// TcpStore: the key/value store gloo's rendezvous runs over (gloo::rendezvous::Store), reachable
// over TCP so that ranks on several hosts can meet at one address and port — what vLLM users
// pass as --data-parallel-address / --data-parallel-rpc-port. One process (rank 0) hosts the
// server on a background thread; every process, the host included, is a client over one
// connection. gloo ships only in-process, file and Redis stores; this one needs nothing but the
// address.
//
// Every operation has a deadline: connecting retries until the host is up or the timeout passes
// (processes start in any order), get/wait poll until the keys exist or the timeout passes, and
// a lost connection fails at once. Failures throw CommError (the gloo Store interface has no
// error return) with the store's address and the key in the message. Keys are plain strings;
// gloo::rendezvous::PrefixStore scopes them per group so several groups share one store.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "base/result.h"

namespace moeserve {

class TcpStoreServer;

struct TcpStoreOptions {
  std::string address = "127.0.0.1";  // the host's address (name or IPv4/IPv6 literal)
  int port = 0;
  bool host = false;  // run the server in this process (bound to address:port)
  std::chrono::milliseconds timeout{60'000};
};

class TcpStore final : public gloo::rendezvous::Store {
 public:
  // Starts the server when options.host, then connects (retrying until options.timeout).
  static Result<std::shared_ptr<TcpStore>> connect(const TcpStoreOptions& options);
  ~TcpStore() override;

  // Stores data under key (replacing any earlier value).
  void set(const std::string& key, const std::vector<char>& data) override;
  // The value under key, waiting up to the timeout for some process to set it (gloo's
  // rendezvous reads peers' keys with get alone).
  std::vector<char> get(const std::string& key) override;
  // Returns once every key is set; throws CommError naming the first missing key after timeout.
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;
  // Whether key is set now (no waiting).
  bool check(const std::string& key);

  // "address:port" of the server, for messages.
  const std::string& endpoint() const { return endpoint_; }
  // This process's address on its connection to the server: the interface that reaches the
  // host, so the one peers on other hosts can reach this process on too.
  const std::string& local_address() const { return local_address_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  TcpStore() = default;
  // One request/reply under mutex_; sets *found and *value from a get.
  void request(char op, const std::string& key, const std::vector<char>* value, bool* found,
               std::vector<char>* reply_value);

  std::unique_ptr<TcpStoreServer> server_;
  int fd_ = -1;
  std::string endpoint_;
  std::string local_address_;
  std::chrono::milliseconds timeout_{60'000};
  std::mutex mutex_;
};

}  // namespace moeserve
