// Hub ids resolved through the local Hugging Face cache (issue 24, item 5; with HF_HUB_OFFLINE): the
// snapshot of refs/main, of another branch, of a commit; --download-dir over $HF_HUB_CACHE over
// $HF_HOME/hub; a model missing from the cache refused with where it was looked for; and
// `moeserve generate ORG/NAME` running the bundled model from a cache laid out as
// huggingface_hub lays it out (files in snapshots/, a ref naming the commit).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli_runner.h"
#include "loader/hub_cache.h"
#include "reference_data.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr const char* kMain = "0123456789abcdef0123456789abcdef01234567";
constexpr const char* kOther = "fedcba9876543210fedcba9876543210fedcba98";

class HubCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("moeserve_hub_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    // The bundled model as snapshot kMain (symlinks, as the hub cache's snapshots are), and an
    // empty snapshot kOther on branch "other" whose config.json is missing.
    const fs::path repo = root_ / "hub" / "models--acme--kjv-tiny";
    fs::create_directories(repo / "refs");
    std::ofstream(repo / "refs" / "main") << kMain;  // no newline, as huggingface_hub writes it
    std::ofstream(repo / "refs" / "other") << kOther << "\n";
    fs::create_directories(repo / "snapshots" / kMain);
    for (const auto& entry : fs::directory_iterator(testing::demo_model())) {
      fs::create_symlink(entry.path(), repo / "snapshots" / kMain / entry.path().filename());
    }
    fs::create_directories(repo / "snapshots" / kOther);
    ::setenv("HF_HOME", root_.c_str(), 1);
    ::unsetenv("HF_HUB_CACHE");
    ::setenv("HF_HUB_OFFLINE", "1", 1);  // the cache alone (downloads: tests/e2e/hub_download_test)
  }
  void TearDown() override {
    ::unsetenv("HF_HOME");
    ::unsetenv("HF_HUB_OFFLINE");
    fs::remove_all(root_);
  }
  fs::path snapshot(const char* commit) const { return root_ / "hub" / "models--acme--kjv-tiny" / "snapshots" / commit; }

  fs::path root_;
};

TEST_F(HubCacheTest, ResolvesRefsAndCommits) {
  EXPECT_FALSE(looks_like_hub_id(testing::demo_model()));
  EXPECT_TRUE(looks_like_hub_id("acme/kjv-tiny"));
  EXPECT_FALSE(looks_like_hub_id("a/b/c"));
  EXPECT_FALSE(looks_like_hub_id("../kjv"));
  auto main = resolve_model_path("acme/kjv-tiny");
  ASSERT_TRUE(main.ok()) << main.error().message;
  EXPECT_EQ(fs::path(*main), snapshot(kMain));
  auto by_commit = resolve_model_path("acme/kjv-tiny", HubLookup{.revision = kMain});
  ASSERT_TRUE(by_commit.ok()) << by_commit.error().message;
  EXPECT_EQ(fs::path(*by_commit), snapshot(kMain));
  // A local path is taken as given.
  auto local = resolve_model_path(testing::demo_model());
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(*local, testing::demo_model());
}

TEST_F(HubCacheTest, MissingModelOrSnapshotIsRefusedWithWhereItLooked) {
  auto missing = resolve_model_path("acme/unknown");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message,
              AllOf(HasSubstr("'acme/unknown'"), HasSubstr((root_ / "hub").string()), HasSubstr("HF_HUB_OFFLINE")));
  auto empty = resolve_model_path("acme/kjv-tiny", HubLookup{.revision = "other"});
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.error().message, AllOf(HasSubstr(kOther), HasSubstr("no config.json")));
}

TEST_F(HubCacheTest, DownloadDirAndHfHubCacheComeFirst) {
  // $HF_HUB_CACHE over $HF_HOME/hub: pointing it elsewhere hides the model.
  const fs::path elsewhere = root_ / "elsewhere";
  fs::create_directories(elsewhere);
  ::setenv("HF_HUB_CACHE", elsewhere.c_str(), 1);
  EXPECT_FALSE(resolve_model_path("acme/kjv-tiny").ok());
  // --download-dir over both.
  auto explicit_dir = resolve_model_path("acme/kjv-tiny", HubLookup{.download_dir = (root_ / "hub").string()});
  ASSERT_TRUE(explicit_dir.ok()) << explicit_dir.error().message;
  EXPECT_EQ(fs::path(*explicit_dir), snapshot(kMain));
  ::unsetenv("HF_HUB_CACHE");
}

TEST_F(HubCacheTest, GenerateRunsAHubIdFromTheCache) {
  const testing::CommandResult run =
      testing::run_moeserve({"generate", "acme/kjv-tiny", "--prompt", "In the beginning", "--max-tokens", "4",
                             "--device", "cpu", "--threads", "2", "--json"},
                            {.env = {{"HF_HOME", root_.string()}}, .timeout_s = 120});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.out, HasSubstr("output_ids"));
  const testing::CommandResult unknown = testing::run_moeserve(
      {"generate", "acme/unknown", "--prompt", "x", "--max-tokens", "1"},
      {.env = {{"HF_HOME", root_.string()}, {"HF_HUB_OFFLINE", "1"}}, .timeout_s = 60});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("nor in the Hugging Face cache"));
}

}  // namespace
}  // namespace moeserve
