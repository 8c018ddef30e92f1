// Hub ids on a machine that has never seen the model (issue 24): `moeserve generate ORG/NAME`
// downloads the model from the hub (HF_ENDPOINT: tests/e2e/node/fake_hub.mjs, serving the bundled
// model with LFS files behind a redirect) into --download-dir in huggingface_hub's layout, then
// generates exactly what the local directory generates; a second run is served from the cache
// with the hub gone; a gated model is refused naming HF_TOKEN and downloads with it, the token
// never forwarded to the CDN; an unknown model is refused with the hub's 404; HF_HUB_OFFLINE
// keeps to the cache; an interrupted file resumes with a Range request; a file whose SHA-256 is
// not the hub's is refused and removed. A log that is not a terminal gets no progress bar.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "cli_runner.h"
#include "e2e/serve_process.h"
#include "http_client.h"

namespace moeserve::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kModel = std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
const char* kSha = "0123456789abcdef0123456789abcdef01234567";

std::vector<std::string> generate_args(const std::string& model, const fs::path& cache) {
  std::vector<std::string> args{"generate", model, "--prompt", "In the beginning", "--max-tokens", "6",
                                "--device", "cpu", "--threads", "2", "--json"};
  if (!cache.empty()) args.insert(args.end(), {"--download-dir", cache.string()});
  return args;
}

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = fs::path(::testing::TempDir()) / ("moeserve_hub_download_" + std::to_string(::getpid()));
    fs::remove_all(cache_);
  }
  void TearDown() override { fs::remove_all(cache_); }
  std::string endpoint(int port) const { return "http://127.0.0.1:" + std::to_string(port); }
  fs::path cache_;
};

TEST_F(HubDownload, DownloadsIntoTheCacheThenRunsFromIt) {
  const CommandResult local = run_moeserve(generate_args(kModel, {}), {.timeout_s = 120});
  ASSERT_EQ(local.exit_code, 0) << local.output;
  {
    ServeProcess hub(ServeProcess::Command{{"node", std::string(MOESERVE_E2E_DIR) + "/node/fake_hub.mjs", kModel},
                                           std::regex(R"(listening ([0-9]+))")});
    const CommandResult first = run_moeserve(generate_args("acme/kjv-remote", cache_),
                                             {.env = {{"HF_ENDPOINT", endpoint(hub.port())}}, .timeout_s = 120});
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_EQ(first.out, local.out);  // the same model, the same greedy continuation
    // stderr is a pipe here, as in a log file: the "downloading" lines, no progress bar (\r).
    EXPECT_THAT(first.err, HasSubstr("downloading "));
    EXPECT_EQ(first.err.find('\r'), std::string::npos) << first.err;
    const fs::path repo = cache_ / "models--acme--kjv-remote";
    std::ifstream ref(repo / "refs" / "main");
    std::string commit((std::istreambuf_iterator<char>(ref)), {});
    EXPECT_EQ(commit, kSha);
    const fs::path snapshot = repo / "snapshots" / kSha;
    for (const char* file : {"config.json", "tokenizer.json", "model.safetensors.index.json",
                             "model-00002-of-00003.safetensors", "generation_config.json"}) {
      EXPECT_TRUE(fs::exists(snapshot / file)) << file;
    }
    EXPECT_EQ(fs::file_size(snapshot / "model-00001-of-00003.safetensors"),
              fs::file_size(fs::path(kModel) / "model-00001-of-00003.safetensors"));
    for (const auto& entry : fs::directory_iterator(snapshot)) {
      const std::string name = entry.path().filename().string();
      EXPECT_FALSE(name.ends_with(".incomplete") || name == "README.md" || name == "train.log") << name;
    }
    EXPECT_FALSE(fs::exists(snapshot / "original"));
    EXPECT_EQ(hub.terminate(), 0);
  }
  // The hub is gone: the cache alone serves the model.
  const CommandResult cached = run_moeserve(generate_args("acme/kjv-remote", cache_),
                                            {.env = {{"HF_ENDPOINT", "http://127.0.0.1:9"}}, .timeout_s = 120});
  ASSERT_EQ(cached.exit_code, 0) << cached.output;
  EXPECT_EQ(cached.out, local.out);
}

TEST_F(HubDownload, GatedUnknownAndOfflineAreRefusedByName) {
  ServeProcess hub(ServeProcess::Command{{"node", std::string(MOESERVE_E2E_DIR) + "/node/fake_hub.mjs", kModel},
                                         std::regex(R"(listening ([0-9]+))")});
  const std::string url = endpoint(hub.port());
  const CommandResult gated =
      run_moeserve(generate_args("acme/gated", cache_), {.env = {{"HF_ENDPOINT", url}}, .timeout_s = 60});
  EXPECT_EQ(gated.exit_code, 1) << gated.output;
  EXPECT_THAT(gated.output, HasSubstr("HTTP 401"));
  EXPECT_THAT(gated.output, HasSubstr("HF_TOKEN"));
  const CommandResult with_token = run_moeserve(generate_args("acme/gated", cache_),
                                                {.env = {{"HF_ENDPOINT", url}, {"HF_TOKEN", "hf_test"}}, .timeout_s = 120});
  EXPECT_EQ(with_token.exit_code, 0) << with_token.output;
  const nlohmann::json stats = HttpClient(hub.port()).request("GET", "/stats").json();
  EXPECT_EQ(stats["cdnWithToken"], 0) << stats.dump();

  const CommandResult unknown =
      run_moeserve(generate_args("acme/unknown", cache_), {.env = {{"HF_ENDPOINT", url}}, .timeout_s = 60});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("HTTP 404"));

  const CommandResult offline = run_moeserve(generate_args("acme/kjv-remote", cache_),
                                             {.env = {{"HF_ENDPOINT", url}, {"HF_HUB_OFFLINE", "1"}}, .timeout_s = 60});
  EXPECT_EQ(offline.exit_code, 1) << offline.output;
  EXPECT_THAT(offline.output, HasSubstr("HF_HUB_OFFLINE"));
  EXPECT_EQ(hub.terminate(), 0);
}

TEST_F(HubDownload, ResumesAPartialFileAndRefusesACorruptOne) {
  const CommandResult local = run_moeserve(generate_args(kModel, {}), {.timeout_s = 120});
  ASSERT_EQ(local.exit_code, 0) << local.output;
  ServeProcess hub(ServeProcess::Command{{"node", std::string(MOESERVE_E2E_DIR) + "/node/fake_hub.mjs", kModel},
                                         std::regex(R"(listening ([0-9]+))")});
  const std::string url = endpoint(hub.port());
  // An earlier attempt stopped after the first 1,000,000 bytes of the first shard.
  const std::string shard = "model-00001-of-00003.safetensors";
  const fs::path snapshot = cache_ / "models--acme--kjv-remote" / "snapshots" / kSha;
  fs::create_directories(snapshot);
  {
    std::ifstream in(fs::path(kModel) / shard, std::ios::binary);
    std::vector<char> head(1000000);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(snapshot / (shard + ".incomplete"), std::ios::binary).write(head.data(), head.size());
  }
  const CommandResult resumed =
      run_moeserve(generate_args("acme/kjv-remote", cache_), {.env = {{"HF_ENDPOINT", url}}, .timeout_s = 120});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(resumed.out, local.out);
  EXPECT_THAT(resumed.err, HasSubstr("resuming at byte 1000000"));
  EXPECT_EQ(fs::file_size(snapshot / shard), fs::file_size(fs::path(kModel) / shard));
  const nlohmann::json stats = HttpClient(hub.port()).request("GET", "/stats").json();
  EXPECT_EQ(stats["ranges"], nlohmann::json::array({shard + " bytes=1000000-"})) << stats.dump();

  // Every weight file of acme/corrupt has one byte flipped: refused by its hash, nothing kept.
  const CommandResult corrupt =
      run_moeserve(generate_args("acme/corrupt", cache_), {.env = {{"HF_ENDPOINT", url}}, .timeout_s = 60});
  EXPECT_EQ(corrupt.exit_code, 1) << corrupt.output;
  EXPECT_THAT(corrupt.output, HasSubstr("sha256"));
  const fs::path corrupt_snapshot = cache_ / "models--acme--corrupt" / "snapshots" / kSha;
  EXPECT_FALSE(fs::exists(corrupt_snapshot / shard));
  EXPECT_FALSE(fs::exists(corrupt_snapshot / (shard + ".incomplete")));
  EXPECT_FALSE(fs::exists(cache_ / "models--acme--corrupt" / "refs" / "main"));
  EXPECT_EQ(hub.terminate(), 0);
}

}  // namespace
}  // namespace moeserve::testing
