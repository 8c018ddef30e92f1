// Issue 24, "one request must not stall everyone": request bodies are parsed, chat-templated and
// tokenized on a bounded pool of request workers, never on the io thread; the API key is checked
// from the headers before a body is read. Over a fake engine on loopback, with a test hook that
// holds chosen requests on their worker (so "while a large request is being parsed" is an event,
// not a timing): small requests are answered while a 30 MB one is held; large requests never take
// every worker; a full queue answers 503 in OpenAI's shape; an unauthenticated 30 MB POST gets its
// 401 before its body is sent and the connection closes; a shutdown answers a request still being
// parsed. And RequestWorkers' lanes and bounds on their own.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <future>

#include <gtest/gtest.h>

#include "server/request_workers.h"
#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Holds, on its worker, every request whose body contains `marker` until release() (after which
// nothing is held); counts every request the workers take.
class WorkerGate {
 public:
  explicit WorkerGate(std::string marker) : marker_(std::move(marker)) {}
  WorkerGate(const WorkerGate&) = delete;
  WorkerGate& operator=(const WorkerGate&) = delete;

  std::function<void(const std::string&, const std::string&)> hook() {
    return [this](const std::string&, const std::string& body) {
      std::unique_lock lock(mutex_);
      ++seen_;
      if (released_ || body.find(marker_) == std::string::npos) return;
      ++held_;
      changed_.notify_all();
      changed_.wait_for(lock, 120s, [this] { return released_; });  // the bound only guards a broken test
      --held_;
    };
  }
  // Waits until `count` requests are held at once.
  bool wait_held(int count, std::chrono::seconds timeout = 30s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return held_ >= count; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  int held() {
    std::lock_guard lock(mutex_);
    return held_;
  }
  int seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  const std::string marker_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool released_ = false;
  int held_ = 0;
  int seen_ = 0;
};

// Declared after the server: releases the gate before the server's workers are joined.
struct ReleaseAtExit {
  WorkerGate& gate;
  ~ReleaseAtExit() { gate.release(); }
};

// `path` with `body` on a connection of its own, answered on a detached thread: the future does
// not block when dropped, so a test that fails while a request is held ends instead of waiting.
std::future<HttpResult> post_async(int port, const std::string& path, std::string body,
                                   std::map<std::string, std::string> headers = {}) {
  auto promise = std::make_shared<std::promise<HttpResult>>();
  std::future<HttpResult> result = promise->get_future();
  std::thread([promise, port, path, body = std::move(body), headers = std::move(headers)] {
    try {
      HttpClient client(port);
      promise->set_value(client.request("POST", path, body, headers));
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
  }).detach();
  return result;
}

// The answer of `request` if it comes within the bound; otherwise nullopt: the request was
// stalled (and the gate is released so that the server can stop).
std::optional<HttpResult> answered_while_held(WorkerGate& gate, std::future<HttpResult> request,
                                              std::chrono::seconds bound = 60s) {
  if (request.wait_for(bound) == std::future_status::ready) return request.get();
  gate.release();
  return std::nullopt;
}

// A ~30 MB completions body that is cheap once parsed: its model does not exist, so it gets 404
// before its prompt would be tokenized (tokenizing 30 MB takes minutes on a busy CI machine).
std::string large_body(const std::string& marker, size_t bytes = 30'000'000) {
  const std::string verse = "In the beginning God created the heaven and the earth. ";
  std::string prompt = marker + " ";
  prompt.reserve(bytes);
  while (prompt.size() + verse.size() < bytes) prompt += verse;
  return json({{"model", "no-such-model"}, {"prompt", prompt}, {"max_tokens", 1}}).dump();
}

void expect_model_not_found(const HttpResult& result) {
  EXPECT_EQ(result.status, 404) << result.body.substr(0, 300);
  EXPECT_EQ(result.json()["error"]["message"], "The model `no-such-model` does not exist.");
}

// OpenAI's error shape with `status` and `type`; returns the message.
std::string expect_error(const HttpResult& result, int status, const std::string& type) {
  EXPECT_EQ(result.status, status) << result.body;
  const json body = json::parse(result.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) {
    ADD_FAILURE() << "not an OpenAI error: " << result.body;
    return "";
  }
  EXPECT_EQ(body["error"].size(), 4u) << result.body;
  EXPECT_EQ(body["error"]["type"], type);
  EXPECT_EQ(body["error"]["code"], status);
  EXPECT_TRUE(body["error"].contains("param"));
  return body["error"]["message"];
}

const std::string kSmallCompletion = json({{"prompt", "In the beginning"}, {"max_tokens", 2}}).dump();

TEST(ServerWorkers, SmallRequestsAreAnsweredWhileA30MbRequestIsParsed) {
  WorkerGate gate("HOLD");
  ServerOptions options;
  options.test_worker_hook = gate.hook();
  ServerHarness harness(options);
  ReleaseAtExit release{gate};

  auto large = post_async(harness.port(), "/v1/completions", large_body("HOLD"));
  ASSERT_TRUE(gate.wait_held(1)) << "the 30 MB request never reached a worker";
  // Everything that needs a worker — a completion, a chat completion, tokenize — is answered while
  // the large request is still on its worker.
  auto completion = answered_while_held(gate, post_async(harness.port(), "/v1/completions", kSmallCompletion));
  ASSERT_TRUE(completion) << "a small completion was stalled by the 30 MB request";
  EXPECT_EQ(completion->status, 200) << completion->body;
  EXPECT_EQ(completion->json()["usage"]["completion_tokens"], 2);
  const json chat = {{"messages", {{{"role", "user"}, {"content", "In the beginning"}}}}, {"max_tokens", 2}};
  auto chat_result = answered_while_held(gate, post_async(harness.port(), "/v1/chat/completions", chat.dump()));
  ASSERT_TRUE(chat_result);
  EXPECT_EQ(chat_result->status, 200) << chat_result->body;
  auto tokens = answered_while_held(gate, post_async(harness.port(), "/tokenize", json({{"prompt", "God"}}).dump()));
  ASSERT_TRUE(tokens);
  EXPECT_EQ(tokens->status, 200) << tokens->body;
  EXPECT_EQ(harness.get("/health").status, 200);
  EXPECT_EQ(gate.held(), 1);
  EXPECT_EQ(large.wait_for(0s), std::future_status::timeout) << "the large request was answered while held";

  gate.release();
  expect_model_not_found(large.get());
}

// Large requests (bodies of 1 MiB or more) run on at most all workers but one, and wait in a
// queue of their own: with two workers, one large request is parsed, one waits, a third gets 503
// at once, and small requests are still answered.
TEST(ServerWorkers, LargeRequestsNeverTakeEveryWorker) {
  WorkerGate gate("HOLD");
  ServerOptions options;
  options.request_threads = 2;
  options.large_request_queue_limit = 1;
  options.test_worker_hook = gate.hook();
  ServerHarness harness(options);
  ReleaseAtExit release{gate};

  auto first = post_async(harness.port(), "/v1/completions", large_body("HOLD", 2 << 20));
  ASSERT_TRUE(gate.wait_held(1));
  // Of two more, one waits for a worker and the other finds the large queue full.
  std::vector<std::future<HttpResult>> more;
  more.push_back(post_async(harness.port(), "/v1/completions", large_body("HOLD", 2 << 20)));
  more.push_back(post_async(harness.port(), "/tokenize", large_body("HOLD", 2 << 20)));
  int refused = -1;
  for (auto deadline = std::chrono::steady_clock::now() + 60s; refused < 0 && std::chrono::steady_clock::now() < deadline;) {
    for (int idx = 0; idx < 2; ++idx) {
      if (more[idx].wait_for(5ms) == std::future_status::ready) refused = idx;
    }
  }
  ASSERT_GE(refused, 0) << "no large request was refused: both are running or queued";
  const HttpResult busy = more[refused].get();
  const std::string message = expect_error(busy, 503, "ServiceUnavailableError");
  EXPECT_EQ(message, "The server is busy: 1 requests of 1 MiB or more are already waiting to be parsed and tokenized; "
                     "retry later.");
  EXPECT_EQ(busy.headers.at("Retry-After"), "1");

  auto small = answered_while_held(gate, post_async(harness.port(), "/v1/completions", kSmallCompletion));
  ASSERT_TRUE(small) << "a small request was stalled by large ones";
  EXPECT_EQ(small->status, 200) << small->body;
  EXPECT_EQ(gate.held(), 1) << "the waiting large request took the worker kept for small ones";

  gate.release();
  expect_model_not_found(first.get());
  expect_model_not_found(more[1 - refused].get());
  EXPECT_EQ(harness.engine.submitted().size(), 1u);  // the small completion only
}

// The small-request queue is bounded too: with both workers held and one request waiting, the
// next gets 503 + Retry-After in OpenAI's shape, while routes that need no worker still answer.
TEST(ServerWorkers, FullQueueGets503InOpenAiShape) {
  WorkerGate gate("HOLD");
  ServerOptions options;
  options.request_threads = 2;
  options.request_queue_limit = 1;
  options.test_worker_hook = gate.hook();
  ServerHarness harness(options);
  ReleaseAtExit release{gate};

  const std::string held = json({{"prompt", "HOLD In the beginning"}, {"max_tokens", 2}}).dump();
  std::vector<std::future<HttpResult>> running;
  running.push_back(post_async(harness.port(), "/v1/completions", held));
  ASSERT_TRUE(gate.wait_held(1));  // taken: the queue is empty again
  running.push_back(post_async(harness.port(), "/v1/completions", held));
  ASSERT_TRUE(gate.wait_held(2));
  std::vector<std::future<HttpResult>> more;
  more.push_back(post_async(harness.port(), "/v1/completions", held));
  more.push_back(post_async(harness.port(), "/v1/chat/completions",
                            json({{"messages", {{{"role", "user"}, {"content", "HOLD"}}}}, {"max_tokens", 2}}).dump()));
  int refused = -1;
  for (auto deadline = std::chrono::steady_clock::now() + 60s; refused < 0 && std::chrono::steady_clock::now() < deadline;) {
    for (int idx = 0; idx < 2; ++idx) {
      if (more[idx].wait_for(5ms) == std::future_status::ready) refused = idx;
    }
  }
  ASSERT_GE(refused, 0) << "no request was refused: the queue is not bounded";
  const HttpResult busy = more[refused].get();
  const std::string message = expect_error(busy, 503, "ServiceUnavailableError");
  EXPECT_EQ(message, "The server is busy: 1 requests are already waiting to be parsed and tokenized; retry later.");
  EXPECT_EQ(busy.headers.at("Retry-After"), "1");
  EXPECT_EQ(busy.headers.at("Connection"), "keep-alive");  // the body was read: the connection stays usable
  EXPECT_EQ(harness.get("/health").status, 200);
  EXPECT_EQ(harness.get("/v1/models").status, 200);

  gate.release();
  for (auto& request : running) EXPECT_EQ(request.get().status, 200);
  EXPECT_EQ(more[1 - refused].get().status, 200);
  EXPECT_EQ(harness.engine.submitted().size(), 3u);
}

// A blocking POSIX client whose reads give up after `timeout` (so a server that waits for a body
// fails the test instead of hanging it).
class RawClient {
 public:
  RawClient(int port, std::chrono::seconds timeout) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    timeval tv{.tv_sec = static_cast<time_t>(timeout.count()), .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { ::close(fd_); }
  void send_all(const std::string& bytes) {
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t put = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      ASSERT_GT(put, 0);
      sent += static_cast<size_t>(put);
    }
  }
  // Everything until the server closes its side; `closed` says whether it did (false: timed out).
  std::string read_to_close(bool& closed) {
    std::string received;
    char buffer[4096];
    while (true) {
      const ssize_t got = ::recv(fd_, buffer, sizeof buffer, 0);
      if (got <= 0) {
        closed = got == 0;
        return received;
      }
      received.append(buffer, static_cast<size_t>(got));
    }
  }

 private:
  int fd_;
};

// The head of a 30 MB unauthenticated POST plus the first 64 KiB of its body.
std::string unauthenticated_head(const std::string& extra_headers = "") {
  const std::string body_start = "{\"prompt\": \"HOLD " + std::string(64 * 1024, 'a');
  return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30000000\r\n" +
         extra_headers + "\r\n" + body_start;
}

// With --api-key, an unauthenticated POST of 30 MB gets its 401 from the headers: the client has
// sent 64 KiB of the body when the answer comes, the server closes the connection (the rest of
// the body is never read, let alone parsed), and an authenticated client is served meanwhile.
TEST(ServerWorkers, UnauthenticatedLargeBodyGets401BeforeItIsRead) {
  WorkerGate gate("HOLD");
  ServerOptions options;
  options.api_key = "sekret";
  options.test_worker_hook = gate.hook();
  ServerHarness harness(options);
  ReleaseAtExit release{gate};
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer sekret"}};

  for (const std::string& extra : {std::string(), std::string("Authorization: Bearer wrong\r\n"),
                                   std::string("Expect: 100-continue\r\n")}) {
    RawClient client(harness.port(), 30s);
    client.send_all(unauthenticated_head(extra));
    // An authenticated client is served while the unauthenticated one is still connected.
    HttpClient other(harness.port());
    EXPECT_EQ(other.request("POST", "/v1/completions", kSmallCompletion, auth).status, 200);
    bool closed = false;
    const std::string received = client.read_to_close(closed);
    EXPECT_TRUE(closed) << "the server kept the connection open, waiting for the body: " << received;
    ASSERT_TRUE(received.starts_with("HTTP/1.1 401 Unauthorized\r\n")) << received;
    EXPECT_NE(received.find("\r\nConnection: close\r\n"), std::string::npos) << received;
    EXPECT_EQ(received.find("100 Continue"), std::string::npos) << received;
    const json error = json::parse(received.substr(received.find("\r\n\r\n") + 4));
    EXPECT_EQ(error["error"]["type"], "AuthenticationError");
    EXPECT_EQ(error["error"]["code"], 401);
  }
  // A chunked upload has no length to judge: refused at once as well.
  {
    RawClient client(harness.port(), 30s);
    client.send_all("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" +
                    std::string(0x10000, ' '));
    bool closed = false;
    const std::string received = client.read_to_close(closed);
    EXPECT_TRUE(closed);
    EXPECT_TRUE(received.starts_with("HTTP/1.1 401 Unauthorized\r\n")) << received;
  }
  // A small unauthenticated body is read and dropped, unparsed: the connection stays usable.
  HttpClient client(harness.port());
  const HttpResult refused = client.request("POST", "/v1/completions", "{not json", {});
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused.headers.at("Connection"), "keep-alive");
  EXPECT_EQ(client.request("POST", "/v1/completions", kSmallCompletion, auth).status, 200);
  // Only the authenticated requests reached a worker.
  EXPECT_EQ(gate.seen(), 4);
  EXPECT_EQ(harness.engine.submitted().size(), 4u);
}

// SIGTERM while a request is still being parsed: it is answered with the shutdown's 503 (nothing
// in flight goes unanswered), its generation never starts, and the server stops once the worker
// is done.
TEST(ServerWorkers, ShutdownAnswersARequestBeingParsed) {
  WorkerGate gate("HOLD");
  FakeEngineClient engine;
  MetricsRegistry registry;
  ServerOptions options;
  options.port = 0;
  options.disable_log_requests = true;
  options.test_worker_hook = gate.hook();
  auto server = std::make_unique<HttpServer>(options, engine, registry);
  ASSERT_TRUE(server->start().ok());
  server->stop_on_signals();
  std::thread io([&] { server->run(); });
  struct StopAtExit {
    WorkerGate& gate;
    std::unique_ptr<HttpServer>& server;
    std::thread& io;
    ~StopAtExit() {
      gate.release();
      if (server) server->stop();
      if (io.joinable()) io.join();
    }
  } stop_at_exit{gate, server, io};
  auto held = post_async(server->port(), "/v1/completions",
                         json({{"prompt", "HOLD In the beginning"}, {"max_tokens", 2}}).dump());
  ASSERT_TRUE(gate.wait_held(1));
  std::raise(SIGTERM);
  ASSERT_EQ(held.wait_for(60s), std::future_status::ready) << "the request being parsed was not answered";
  const HttpResult result = held.get();
  EXPECT_EQ(expect_error(result, 503, "ServiceUnavailableError"), "the server is shutting down");
  io.join();  // run() returned with the worker still held
  gate.release();
  server.reset();  // joins the workers; the finished route's job is dropped unstarted
  EXPECT_TRUE(engine.submitted().empty());
}

// Tasks that wait until open(); counts what started. Declared before the pool, with an
// OpenAtExit after it, so that a failing test opens the tasks before the pool joins its threads.
class Blocker {
 public:
  std::function<void()> task(int& counter) {
    return [this, &counter] {
      std::unique_lock lock(mutex_);
      ++counter;
      changed_.notify_all();
      changed_.wait(lock, [this] { return open_; });
    };
  }
  std::function<void()> count(int& counter) {
    return [this, &counter] {
      std::lock_guard lock(mutex_);
      ++counter;
      changed_.notify_all();
    };
  }
  bool wait_for(int& counter, int value) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 30s, [&] { return counter >= value; });
  }
  int read(const int& counter) {
    std::lock_guard lock(mutex_);
    return counter;
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

struct OpenAtExit {
  Blocker& blocker;
  ~OpenAtExit() { blocker.open(); }
};

// RequestWorkers on its own: lanes, bounds, the worker kept for small tasks, and stop().
TEST(RequestWorkers, LargeTasksLeaveAWorkerForSmallOnesAndQueuesAreBounded) {
  Blocker blocker;
  int large_started = 0;
  int small_done = 0;
  RequestWorkers workers({.num_threads = 2, .max_queued = 2, .max_queued_large = 1});
  OpenAtExit open_at_exit{blocker};
  ASSERT_TRUE(workers.submit(RequestWorkers::Lane::kLarge, blocker.task(large_started)));
  ASSERT_TRUE(blocker.wait_for(large_started, 1));
  ASSERT_TRUE(workers.submit(RequestWorkers::Lane::kLarge, blocker.task(large_started)));  // waits: a worker stays for small
  EXPECT_FALSE(workers.submit(RequestWorkers::Lane::kLarge, blocker.task(large_started)));  // the large queue holds one
  for (int idx = 0; idx < 2; ++idx) ASSERT_TRUE(workers.submit(RequestWorkers::Lane::kSmall, blocker.count(small_done)));
  ASSERT_TRUE(blocker.wait_for(small_done, 2)) << "small tasks waited behind large ones";
  EXPECT_EQ(blocker.read(large_started), 1);  // the second large task is still waiting
  blocker.open();
  ASSERT_TRUE(blocker.wait_for(large_started, 2));
  EXPECT_EQ(RequestWorkers::lane_for(RequestWorkers::kLargeBodyBytes - 1), RequestWorkers::Lane::kSmall);
  EXPECT_EQ(RequestWorkers::lane_for(RequestWorkers::kLargeBodyBytes), RequestWorkers::Lane::kLarge);
  EXPECT_GE(RequestWorkers::default_num_threads(), 2);
  EXPECT_LE(RequestWorkers::default_num_threads(), 8);
  workers.stop();
  EXPECT_FALSE(workers.submit(RequestWorkers::Lane::kSmall, [] {}));
}

// Counts its destruction: a queued task that stop() drops is destroyed without having run.
struct DestructionCounter {
  std::atomic<int>* destroyed;
  ~DestructionCounter() { ++*destroyed; }
};

TEST(RequestWorkers, SmallQueueIsBoundedAndStopDropsWhatWaits) {
  Blocker blocker;
  int started = 0;
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  RequestWorkers workers({.num_threads = 2, .max_queued = 2, .max_queued_large = 1});
  OpenAtExit open_at_exit{blocker};
  ASSERT_TRUE(workers.submit(RequestWorkers::Lane::kSmall, blocker.task(started)));
  ASSERT_TRUE(blocker.wait_for(started, 1));
  ASSERT_TRUE(workers.submit(RequestWorkers::Lane::kSmall, blocker.task(started)));
  ASSERT_TRUE(blocker.wait_for(started, 2));  // both workers busy, the queue empty
  const auto counted = [&] {
    return [&ran, counter = std::shared_ptr<DestructionCounter>(new DestructionCounter{&destroyed})] { ++ran; };
  };
  EXPECT_TRUE(workers.submit(RequestWorkers::Lane::kSmall, counted()));
  EXPECT_TRUE(workers.submit(RequestWorkers::Lane::kSmall, counted()));
  EXPECT_FALSE(workers.submit(RequestWorkers::Lane::kSmall, counted()));  // full: dropped at once
  EXPECT_EQ(destroyed.load(), 1);
  std::thread stopper([&] { workers.stop(); });  // drops the two queued, then waits for the running
  // Both workers are still blocked, so the queued tasks can only have been dropped.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (destroyed.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(destroyed.load(), 3) << "stop() did not drop the queued tasks";
  EXPECT_EQ(ran.load(), 0);
  blocker.open();
  stopper.join();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_FALSE(workers.submit(RequestWorkers::Lane::kSmall, [] {}));
}

}  // namespace
}  // namespace moeserve::testing
