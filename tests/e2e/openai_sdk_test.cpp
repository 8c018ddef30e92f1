// The official OpenAI Node SDK (npm `openai`, installed by `make test` into tests/e2e/node)
// against `moeserve serve` with the bundled model: see tests/e2e/node/openai_sdk_check.mjs.
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "cli_runner.h"
#include "e2e/serve_process.h"

namespace moeserve::testing {
namespace {

TEST(OpenAiSdk, NodeClientGetsExactOutputsAndTypedErrors) {
  const std::string node_dir = std::string(MOESERVE_E2E_DIR) + "/node";
  const std::string model = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
  FILE* probe = std::fopen((node_dir + "/node_modules/openai/package.json").c_str(), "r");
  ASSERT_NE(probe, nullptr) << "the openai SDK is not installed in " << node_dir << ": `make test` installs it";
  std::fclose(probe);
  ServeProcess server({model, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests"});
  const CommandResult node = run_command(
      {"node", node_dir + "/openai_sdk_check.mjs", std::to_string(server.port()), model}, {.timeout_s = 300});
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("openai sdk checks passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.terminate(), 0);
}

// SIGTERM while the SDK reads a stream: it raises its typed APIError with the server's message
// (the stream ends with an OpenAI error event and [DONE]), and the server exits 0.
TEST(OpenAiSdk, ShutdownEndsTheStreamWithATypedError) {
  const std::string node_dir = std::string(MOESERVE_E2E_DIR) + "/node";
  const std::string model = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
  FILE* probe = std::fopen((node_dir + "/node_modules/openai/package.json").c_str(), "r");
  ASSERT_NE(probe, nullptr) << "the openai SDK is not installed in " << node_dir << ": `make test` installs it";
  std::fclose(probe);
  ServeProcess server({model, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests"});
  const CommandResult node =
      run_command({"node", node_dir + "/openai_sdk_shutdown.mjs", std::to_string(server.port()),
                   std::to_string(server.pid())},
                  {.timeout_s = 120});
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("openai sdk shutdown check passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.wait_exit(), 0) << server.output();  // the script's SIGTERM: no second signal
}

}  // namespace
}  // namespace moeserve::testing
