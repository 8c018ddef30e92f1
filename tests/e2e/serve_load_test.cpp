// A bounded load test on loopback: `moeserve bench serve` sends 512 random prompts at
// concurrency 256 to `moeserve serve` with the bundled model. Every request must succeed, nothing
// may stay running, and the server's resident memory after a second identical load must come back
// near its level after the first (no per-request leak; the first load is what touches the KV
// pages and allocator pools for the first time, so it sets the warmed-up idle level). It measures nothing for speed: the figures are bench/results' business.
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "e2e/serve_process.h"
#include "http_client.h"

namespace moeserve::testing {
namespace {

// `moeserve ARGS...` to completion: {exit status, stdout + stderr}.
std::pair<int, std::string> run_pair(const std::vector<std::string>& args) {
  const CommandResult result = run_moeserve(args, {.timeout_s = 600});
  return {result.exit_code, result.output};
}

TEST(ServeLoad, FiveHundredTwelvePromptsAtConcurrency256AllSucceed) {
  const std::string model = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
  ServeProcess server({model, "--host", "127.0.0.1", "--port", "0", "--threads", "2", "--kv-cache-memory", "256MiB",
                       "--disable-log-requests"});
  const auto run_load = [&](int prompts, const std::string& result_file) {
    return run_pair({"bench", "serve", "--model", model, "--base-url",
                              "http://127.0.0.1:" + std::to_string(server.port()), "--num-prompts",
                              std::to_string(prompts), "--max-concurrency", "256", "--random-input-len", "24",
                              "--random-output-len", "12", "--random-range-ratio", "0.5", "--ignore-eos",
                              "--disable-tqdm", "--result-file", result_file});
  };
  const std::string dir = ::testing::TempDir();
  // Warm up (first touch of KV pages, step-loop buffers at batch 256, allocator pools), then take
  // the idle level.
  const auto [warm_status, warm_output] = run_load(512, dir + "/warmup.json");
  ASSERT_EQ(warm_status, 0) << warm_output;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long idle_rss = server.rss_bytes();
  ASSERT_GT(idle_rss, 0);

  const auto [status, output] = run_load(512, dir + "/load.json");
  ASSERT_EQ(status, 0) << output;
  std::ifstream file(dir + "/load.json");
  const nlohmann::json result = nlohmann::json::parse(file);
  EXPECT_EQ(result["completed"], 512) << output;
  EXPECT_EQ(result["failed"], 0) << output;
  EXPECT_EQ(result["total_output_tokens"].get<int64_t>() > 512 * 5, true);

  HttpClient client(server.port());
  const std::string metrics = client.request("GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "vllm:num_requests_running"), 0);
  EXPECT_EQ(metric_value(metrics, "vllm:num_requests_waiting"), 0);
  EXPECT_EQ(metric_value(metrics, "vllm:kv_cache_usage_perc"), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long after_rss = server.rss_bytes();
  // "Near idle": within 10% + 16 MiB of the warmed-up idle level (allocators keep some pages).
  EXPECT_LE(after_rss, idle_rss + idle_rss / 10 + (16L << 20)) << "idle " << idle_rss << " after " << after_rss;
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace moeserve::testing
