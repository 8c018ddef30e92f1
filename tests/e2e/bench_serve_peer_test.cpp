// `moeserve bench serve` drives a server that is not moeserve (issue 24: it failed every request
// against llama.cpp's, speaking HTTP/1.0 and reading to the close): tests/e2e/node/sse_server.mjs,
// plain Node http, answers with keep-alive and chunked transfer encoding, CRLF-terminated SSE
// events split across chunks. Every request must succeed with every token counted, over no more
// connections than requests in flight (keep-alive reuse), and `bench serve` against moeserve
// itself keeps working over the same client.
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "e2e/serve_process.h"
#include "http_client.h"

namespace moeserve::testing {
namespace {

const std::string kModel = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";

// `bench serve` of 16 requests of 7 tokens at concurrency 4 against the server on `port`: every
// request succeeds and every token is counted.
void expect_every_request_served(int port, const std::string& result_name) {
  const std::string result_file = ::testing::TempDir() + "/" + result_name;
  const CommandResult run = run_moeserve(
      {"bench", "serve", "--model", kModel, "--base-url", "http://127.0.0.1:" + std::to_string(port), "--num-prompts",
       "16", "--max-concurrency", "4", "--random-input-len", "6", "--random-output-len", "7", "--random-range-ratio", "0",
       "--ignore-eos", "--disable-tqdm", "--result-file", result_file},
      {.timeout_s = 300});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json result = nlohmann::json::parse(std::ifstream(result_file));
  EXPECT_EQ(result["completed"], 16) << result.dump();
  EXPECT_EQ(result["total_output_tokens"], 16 * 7) << result.dump();
}

TEST(BenchServePeer, NodeServerWithKeepAliveAndChunkedSse) {
  ServeProcess node(ServeProcess::Command{{"node", std::string(MOESERVE_E2E_DIR) + "/node/sse_server.mjs"},
                                          std::regex(R"(listening ([0-9]+))")});
  expect_every_request_served(node.port(), "bench_serve_peer.json");
  const nlohmann::json stats = HttpClient(node.port()).request("GET", "/stats").json();
  EXPECT_EQ(stats["completions"], 16);
  // /v1/models, then at most one connection per request in flight, and this GET.
  EXPECT_LE(stats["connections"].get<int>(), 1 + 4 + 1) << stats.dump();
  EXPECT_EQ(node.terminate(), 0);
}

TEST(BenchServePeer, MoeserveServerOverTheSameClient) {
  ServeProcess server({kModel, "--host", "127.0.0.1", "--port", "0", "--threads", "2", "--disable-log-requests"});
  expect_every_request_served(server.port(), "bench_serve_moeserve.json");
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace moeserve::testing
