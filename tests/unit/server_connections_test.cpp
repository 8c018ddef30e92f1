// The HTTP server's connection handling over a fake engine on loopback (bounded; nothing
// leaves 127.0.0.1): a client that disconnects mid-stream or mid-request has its engine
// request aborted; 512 idle keep-alive connections are all held and served; 512 concurrent
// streaming requests are all held open at once and all complete; with file descriptors run out,
// accept is retried every 100 ms but its failure is logged at most once per interval.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

#include <gtest/gtest.h>

#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

using nlohmann::json;
namespace asio = boost::asio;

std::string raw_post(const std::string& path, const json& body) {
  const std::string text = body.dump();
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(text.size()) + "\r\n\r\n" + text;
}

std::string wait_first_request_id(FakeEngineClient& engine, size_t count = 1) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine.submitted().size() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return engine.submitted().empty() ? "" : engine.submitted().back().request_id;
}

TEST(ServerConnections, DisconnectMidStreamAbortsTheRequest) {
  ServerHarness harness;
  harness.engine.hold_after_tokens = 3;
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    const size_t before = harness.engine.submitted().size();
    {
      HttpClient client(harness.port());
      json body = {{"max_tokens", 100}, {"stream", true}};
      if (std::string(path) == "/v1/completions") {
        body["prompt"] = "In the beginning God created";
      } else {
        body["messages"] = {{{"role", "user"}, {"content", "In the beginning"}}};
      }
      asio::write(client.socket(), asio::buffer(raw_post(path, body)));
      // Read until some generated text has arrived, then hang up.
      std::string received;
      char buffer[4096];
      while (received.find("data: ") == std::string::npos) {
        received.append(buffer, client.socket().read_some(asio::buffer(buffer)));
      }
    }
    const std::string id = wait_first_request_id(harness.engine, before + 1);
    EXPECT_TRUE(harness.engine.wait_aborted(id)) << path;
  }
  EXPECT_EQ(harness.get("/health").status, 200);
}

TEST(ServerConnections, DisconnectDuringNonStreamingRequestAbortsIt) {
  ServerHarness harness;
  harness.engine.hold_after_tokens = 1;
  {
    HttpClient client(harness.port());
    json body = {{"prompt", "God"}, {"max_tokens", 100}, {"n", 2}};
    asio::write(client.socket(), asio::buffer(raw_post("/v1/completions", body)));
    wait_first_request_id(harness.engine, 2);
  }
  auto submitted = harness.engine.submitted();
  ASSERT_EQ(submitted.size(), 2u);
  EXPECT_TRUE(harness.engine.wait_aborted(submitted[0].request_id));
  EXPECT_TRUE(harness.engine.wait_aborted(submitted[1].request_id));
}

// Issue 24: a client that leaves after sending 100 prompts x n=128 (no --max-waiting-requests)
// has all 12,800 of its engine requests aborted at once, promptly (the fake engine's duplicate-id
// check is quadratic, so the 1,000 prompts would only time the fake).
TEST(ServerConnections, DisconnectAbortsEverySequenceOfALargeRequest) {
  ServerHarness harness;
  harness.engine.hold_after_tokens = 0;
  json prompts = json::array();
  for (int i = 0; i < 100; ++i) prompts.push_back(json::array({1, 560, 272}));
  {
    HttpClient client(harness.port());
    json body = {{"prompt", prompts}, {"n", 128}, {"temperature", 1.0}, {"max_tokens", 4}};
    asio::write(client.socket(), asio::buffer(raw_post("/v1/completions", body)));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (harness.engine.submitted().size() < 12800u && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(harness.engine.submitted().size(), 12800u);
  }
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(10);
  while ((harness.engine.aborted().size() < 12800u || harness.engine.num_active() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(harness.engine.aborted().size(), 12800u);
  EXPECT_EQ(harness.engine.num_active(), 0);
  EXPECT_EQ(harness.get("/health").status, 200);
}

TEST(ServerConnections, HoldsAndServes512IdleConnections) {
  ServerHarness harness;
  constexpr int kConnections = 512;
  asio::io_context io;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> sockets;
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(harness.port()));
  for (int idx = 0; idx < kConnections; ++idx) {
    sockets.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    sockets.back()->connect(endpoint);
  }
  // All idle at once; a new client is still served promptly.
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", "God"}, {"max_tokens", 2}}).status, 200);
  // Every idle connection is alive and answers.
  const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  for (auto& socket : sockets) asio::write(*socket, asio::buffer(request));
  int served = 0;
  for (auto& socket : sockets) {
    boost::beast::flat_buffer buffer;
    boost::beast::http::response<boost::beast::http::string_body> response;
    boost::beast::http::read(*socket, buffer, response);
    served += response.result_int() == 200;
  }
  EXPECT_EQ(served, kConnections);
}

TEST(ServerConnections, Holds512ConcurrentStreams) {
  ServerHarness harness;
  constexpr int kStreams = 512;
  harness.engine.hold_after_tokens = 1;
  asio::io_context io;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> sockets;
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(harness.port()));
  const std::string request = raw_post("/v1/completions", {{"prompt", "In the beginning"}, {"max_tokens", 4}, {"stream", true}});
  for (int idx = 0; idx < kStreams; ++idx) {
    sockets.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    sockets.back()->connect(endpoint);
    asio::write(*sockets.back(), asio::buffer(request));
  }
  wait_first_request_id(harness.engine, kStreams);
  ASSERT_EQ(harness.engine.submitted().size(), static_cast<size_t>(kStreams));
  EXPECT_EQ(harness.engine.num_active(), kStreams);  // all in flight together
  harness.engine.release_holds();
  int complete = 0;
  std::set<std::string> texts;
  for (auto& socket : sockets) {
    boost::beast::flat_buffer buffer;
    boost::beast::http::response<boost::beast::http::string_body> response;
    boost::beast::http::read(*socket, buffer, response);
    const std::vector<std::string> payloads = sse_payloads(response.body());
    if (payloads.empty() || payloads.back() != "[DONE]") continue;
    ++complete;
    std::string text;
    for (size_t idx = 0; idx + 1 < payloads.size(); ++idx) text += json::parse(payloads[idx])["choices"][0]["text"];
    texts.insert(text);
  }
  EXPECT_EQ(complete, kStreams);
  // Every stream carried the same complete text as a non-streamed request.
  json plain = harness.post("/v1/completions", {{"prompt", "In the beginning"}, {"max_tokens", 4}}).json();
  EXPECT_EQ(texts, std::set<std::string>{plain["choices"][0]["text"].get<std::string>()});
  EXPECT_TRUE(harness.engine.aborted().empty());
}

// Runs the server out of file descriptors for `duration` with one connection waiting in its
// listen backlog (this process is both client and server, so every free descriptor is taken
// after the client socket connects), then frees them; returns the client's response to GET
// /health, which the retried accept must still serve.
std::string starve_accept(int port, std::chrono::milliseconds duration) {
  rlimit saved{};
  EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit lowered = saved;
  lowered.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 1024);
  EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  std::vector<int> fillers;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY)) >= 0;) fillers.push_back(fd);
  EXPECT_EQ(errno, EMFILE);
  ::close(fillers.back());  // one descriptor for the client socket, none for the server
  fillers.pop_back();
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(client, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  std::this_thread::sleep_for(duration);
  for (int fd : fillers) ::close(fd);
  EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(::write(client, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[1024];
  for (ssize_t got; (got = ::read(client, buffer, sizeof buffer)) > 0;) response.append(buffer, got);
  ::close(client);
  return response;
}

// The failed-attempt count the recovery line reports (-1 when it is missing).
int64_t recovered_after(const LogCapture& log) {
  const auto lines = log.matching("accepting connections again after");
  std::smatch match;
  if (lines.size() != 1 || !std::regex_search(lines[0], match, std::regex("after ([0-9]+) failed attempts"))) return -1;
  return std::stoll(match[1]);
}

TEST(ServerConnections, OutOfDescriptorsLogsAcceptFailureOncePerInterval) {
  LogCapture log;
  ServerHarness harness;
  const std::string response = starve_accept(harness.port(), std::chrono::milliseconds(1500));
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response;
  // ~15 failures in 1.5 s (the 100 ms back-off is unchanged: no spinning), one line for them.
  const auto failed = log.matching("accept failed");
  ASSERT_EQ(failed.size(), 1u) << ::testing::PrintToString(log.lines());
  EXPECT_EQ(failed[0], "warning accept failed: Too many open files (retrying every 100 ms; repeats are reported at most "
                       "every 10 s)");
  const int64_t attempts = recovered_after(log);
  EXPECT_GE(attempts, 8) << ::testing::PrintToString(log.lines());
  EXPECT_LE(attempts, 20) << ::testing::PrintToString(log.lines());
}

TEST(ServerConnections, LongAcceptFailureIsReportedEachIntervalWithACount) {
  LogCapture log;
  ServerOptions options;
  options.accept_error_log_interval_s = 0.5;
  ServerHarness harness(options);
  const std::string response = starve_accept(harness.port(), std::chrono::milliseconds(1600));
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response;
  const auto failed = log.matching("accept failed");
  ASSERT_GE(failed.size(), 3u) << ::testing::PrintToString(log.lines());
  ASSERT_LE(failed.size(), 4u) << ::testing::PrintToString(log.lines());
  int64_t reported = 1;
  for (size_t index = 1; index < failed.size(); ++index) {
    std::smatch match;
    ASSERT_TRUE(std::regex_match(failed[index], match,
                                 std::regex("warning accept failed: Too many open files \\(([0-9]+) more failures since "
                                            "the last report\\)")))
        << failed[index];
    EXPECT_GE(std::stoll(match[1]), 3);  // 0.5 s of 100 ms retries: 5, fewer when timers run late
    EXPECT_LE(std::stoll(match[1]), 7);
    reported += std::stoll(match[1]);
  }
  // Every failure is counted once: those reported plus those after the last report.
  const int64_t attempts = recovered_after(log);
  EXPECT_GE(attempts, reported);
  EXPECT_LE(attempts, reported + 6);
}

}  // namespace
}  // namespace moeserve::testing
