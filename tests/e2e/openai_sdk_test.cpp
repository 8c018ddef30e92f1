// The official OpenAI Node SDK (npm `openai`, installed by `make test` into tests/e2e/node)
// against `moeserve serve` with the bundled model: see tests/e2e/node/openai_sdk_check.mjs.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "cli_runner.h"
#include "e2e/serve_process.h"

namespace moeserve::testing {
namespace {

const std::string kNodeDir = std::string(MOESERVE_E2E_DIR) + "/node";
const std::string kModel = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";

bool sdk_installed() { return std::filesystem::exists(kNodeDir + "/node_modules/openai/package.json"); }

TEST(OpenAiSdk, NodeClientGetsExactOutputsAndTypedErrors) {
  ASSERT_TRUE(sdk_installed()) << "the openai SDK is not installed in " << kNodeDir << ": `make test` installs it";
  ServeProcess server({kModel, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests"});
  const CommandResult node = run_command(
      {"node", kNodeDir + "/openai_sdk_check.mjs", std::to_string(server.port()), kModel}, {.timeout_s = 300});
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("openai sdk checks passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.terminate(), 0);
}

// SIGTERM while the SDK reads a stream: it raises its typed APIError with the server's message
// (the stream ends with an OpenAI error event and [DONE]), and the server exits 0.
TEST(OpenAiSdk, ShutdownEndsTheStreamWithATypedError) {
  ASSERT_TRUE(sdk_installed()) << "the openai SDK is not installed in " << kNodeDir << ": `make test` installs it";
  ServeProcess server({kModel, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "kjv", "--threads", "2",
                       "--disable-log-requests"});
  const CommandResult node =
      run_command({"node", kNodeDir + "/openai_sdk_shutdown.mjs", std::to_string(server.port()),
                   std::to_string(server.pid())},
                  {.timeout_s = 120});
  EXPECT_EQ(node.exit_code, 0) << node.output;
  EXPECT_NE(node.out.find("openai sdk shutdown check passed"), std::string::npos) << node.output;
  EXPECT_EQ(server.wait_exit(), 0) << server.output();  // the script's SIGTERM: no second signal
}

}  // namespace
}  // namespace moeserve::testing
