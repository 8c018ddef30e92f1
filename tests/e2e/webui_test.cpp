// The live page at `/` in a real browser (Debian's chromium, headless, driven by puppeteer-core
// from tests/e2e/node, installed by `make test`) against `moeserve serve` with the bundled KJV
// model: see tests/e2e/node/webui_check.mjs for what is checked. With MOESERVE_SCREENSHOT_DIR
// set, the script saves the screenshots the README shows (docs/images/webui-*.png).
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "cli_runner.h"
#include "e2e/serve_process.h"

namespace moeserve::testing {
namespace {

const std::string kNodeDir = std::string(MOESERVE_E2E_DIR) + "/node";
const std::string kModel = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";

std::string chromium() {
  const char* path = std::getenv("MOESERVE_CHROMIUM");
  return path != nullptr ? path : "/usr/bin/chromium";
}

void expect_ready() {
  ASSERT_TRUE(std::filesystem::exists(kNodeDir + "/node_modules/puppeteer-core/package.json"))
      << "puppeteer-core is not installed in " << kNodeDir << ": `make test` (make e2e-clients) installs it";
  ASSERT_TRUE(std::filesystem::exists(chromium()))
      << "no chromium at " << chromium() << ": scripts/install-deps.sh installs Debian's";
}

CommandResult run_check(int port, const std::string& mode, const std::string& api_key = "") {
  std::vector<std::string> argv{"node", kNodeDir + "/webui_check.mjs", std::to_string(port), mode};
  if (!api_key.empty()) argv.push_back(api_key);
  return run_command(argv, {.timeout_s = 300});
}

// Heatmap = /metrics cell for cell, painted cells = non-zero ones, a streamed chat answer,
// phone width and dark mode, no console error; behind --api-key, which the page asks for.
TEST(WebUi, HeatmapMatchesMetricsAndChatStreams) {
  expect_ready();
  ServeProcess server({kModel, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests", "--api-key", "webui-test-key"});
  const CommandResult node = run_check(server.port(), "single", "webui-test-key");
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("webui checks passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.terminate(), 0) << server.output();
}

// Two DP replicas with expert parallelism and EPLB every 32 steps: a rearrangement shows up on
// the page as it happens.
TEST(WebUi, EplbRearrangementAppearsOnThePage) {
  expect_ready();
  ServeProcess server({kModel, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests", "--data-parallel-size", "2", "--enable-expert-parallel",
                       "--enable-eplb", "--eplb-config",
                       R"({"window_size":8,"step_interval":32,"num_redundant_experts":2})"});
  const CommandResult node = run_check(server.port(), "eplb");
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("webui checks passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.terminate(), 0) << server.output();
}

}  // namespace
}  // namespace moeserve::testing
