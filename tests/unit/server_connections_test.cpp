// The HTTP server's connection handling over a fake engine on loopback (bounded; nothing
// leaves 127.0.0.1): a client that disconnects mid-stream or mid-request has its engine
// request aborted; 512 idle keep-alive connections are all held and served; 512 concurrent
// streaming requests are all held open at once and all complete.
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

}  // namespace
}  // namespace moeserve::testing
