// Loader robustness: every way a checkpoint can be corrupt gives one clear error naming the
// file, the tensor and what was wrong — never a crash or a read past the end (this binary also
// runs under AddressSanitizer via the asan preset). Plus: sharded checkpoints resolve every
// tensor to its shard, and written files read back identically. A FIFO (or any non-regular
// file) where a shard or config.json belongs is refused by name at once: opening one used to
// wait for a writer forever, hanging start-up.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>

#include <nlohmann/json.hpp>

#include "base/text_file.h"
#include "loader/checkpoint.h"
#include "loader/json_file.h"
#include "loader/safetensors.h"
#include "model/config.h"
#include "reference_data.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("moeserve_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a file from a header (JSON text) and `data_bytes` bytes of data.
  std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                        std::optional<uint64_t> claimed_len = std::nullopt) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = claimed_len.value_or(header.size());
    out.write(reinterpret_cast<const char*>(&len), 8);
    out << header;
    std::string data(data_bytes, '\x01');
    out << data;
    return path;
  }

  std::string error_of(const std::string& path) {
    auto file = SafetensorsFile::open(path);
    EXPECT_FALSE(file.ok());
    return file.ok() ? "" : file.error().message;
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, ValidFileRoundTrips) {
  Tensor values(DType::kF32, Shape{2, 3});
  for (int i = 0; i < 6; ++i) values.f32()[i] = static_cast<float>(i) * 0.5f;
  const std::string path = (dir_ / "ok.safetensors").string();
  ASSERT_TRUE(write_safetensors(path, {{"w", values.view()}}).ok());
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.error().message;
  const TensorView view = (*file)->view("w");
  EXPECT_EQ(view.shape, (Shape{2, 3}));
  EXPECT_EQ(view.dtype, DType::kF32);
  EXPECT_EQ(std::memcmp(view.data, values.f32(), 24), 0);
}

TEST_F(SafetensorsTest, TruncatedFile) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const std::string path = write_raw("trunc.safetensors", header, 8);
  EXPECT_THAT(error_of(path), AllOf(HasSubstr("trunc.safetensors"), HasSubstr("'w'"), HasSubstr("outside")));
}

TEST_F(SafetensorsTest, FileShorterThanHeaderLength) {
  const std::string path = write_raw("short.safetensors", "{}", 0, /*claimed_len=*/1000);
  EXPECT_THAT(error_of(path), AllOf(HasSubstr("short.safetensors"), HasSubstr("header length 1000")));
}

TEST_F(SafetensorsTest, TinyFile) {
  const std::string path = (dir_ / "tiny.safetensors").string();
  std::ofstream(path) << "abc";
  EXPECT_THAT(error_of(path), AllOf(HasSubstr("tiny.safetensors"), HasSubstr("too short")));
}

TEST_F(SafetensorsTest, BadHeaderJson) {
  const std::string path = write_raw("badjson.safetensors", R"({"w": {"dtype": "F32", )", 0);
  EXPECT_THAT(error_of(path), AllOf(HasSubstr("badjson.safetensors"), HasSubstr("not a valid JSON")));
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[100,108]}})";
  EXPECT_THAT(error_of(write_raw("range.safetensors", header, 8)), AllOf(HasSubstr("'w'"), HasSubstr("outside")));
}

TEST_F(SafetensorsTest, OffsetsReversed) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})";
  EXPECT_THAT(error_of(write_raw("rev.safetensors", header, 8)), HasSubstr("'w'"));
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_THAT(error_of(write_raw("overlap.safetensors", header, 12)),
              AllOf(HasSubstr("overlap.safetensors"), HasSubstr("'a'"), HasSubstr("'b'"), HasSubstr("overlap")));
}

TEST_F(SafetensorsTest, ShapeDisagreesWithByteLength) {
  const std::string header = R"({"w":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,16]}})";
  EXPECT_THAT(error_of(write_raw("bytes.safetensors", header, 16)),
              AllOf(HasSubstr("'w'"), HasSubstr("needs 18 bytes"), HasSubstr("span 16")));
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const std::string header = R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})";
  EXPECT_THAT(error_of(write_raw("dtype.safetensors", header, 2)), AllOf(HasSubstr("'w'"), HasSubstr("Q4_K")));
}

TEST_F(SafetensorsTest, NegativeAndHugeDims) {
  EXPECT_THAT(error_of(write_raw("neg.safetensors", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
              HasSubstr("'w'"));
  EXPECT_THAT(error_of(write_raw("huge.safetensors",
                                 R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
              HasSubstr("'w'"));
}

TEST_F(SafetensorsTest, AcceptsEveryCheckpointDtype) {
  const std::string header = R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
                             R"("b":{"dtype":"I64","shape":[1],"data_offsets":[2,10]},)"
                             R"("c":{"dtype":"F16","shape":[1],"data_offsets":[10,12]},)"
                             R"("d":{"dtype":"I32","shape":[1],"data_offsets":[12,16]}})";
  auto file = SafetensorsFile::open(write_raw("dtypes.safetensors", header, 16));
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ((*file)->view("a").dtype, DType::kF8E4M3);
  EXPECT_EQ((*file)->view("b").dtype, DType::kI64);
}

class CheckpointTest : public SafetensorsTest {};

TEST_F(CheckpointTest, MissingTensorAndWrongShapeNameFileAndTensor) {
  const std::string header = R"({"model.norm.weight":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})";
  write_raw("model.safetensors", header, 8);
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  auto missing = checkpoint->require("lm_head.weight", Shape{4, 4});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, AllOf(HasSubstr("'lm_head.weight'"), HasSubstr("missing")));
  auto wrong = checkpoint->require("model.norm.weight", Shape{8});
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.error().message,
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'model.norm.weight'"), HasSubstr("[4]"), HasSubstr("[8]")));
}

// The checkpoint hands an fp8 tensor over as F8_E4M3; the weight loader pairs it with its block
// scales or refuses it (tests/unit/fp8_test.cpp), so its dtype must never be lost here.
TEST_F(CheckpointTest, Fp8TensorKeepsItsDtype) {
  const std::string header = R"({"model.norm.weight":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})";
  write_raw("model.safetensors", header, 4);
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  auto weight = checkpoint->require("model.norm.weight", Shape{4});
  ASSERT_TRUE(weight.ok()) << weight.error().message;
  EXPECT_EQ(weight->dtype, DType::kF8E4M3);
}

TEST_F(CheckpointTest, MissingShard) {
  const nlohmann::json index = {{"weight_map", {{"a", "model-00001-of-00002.safetensors"}}}};
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.error().message, AllOf(HasSubstr("model-00001-of-00002.safetensors"), HasSubstr("'a'"),
                                                HasSubstr("missing")));
}

TEST_F(CheckpointTest, IndexListsTensorAbsentFromShard) {
  write_raw("shard.safetensors", R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  const nlohmann::json index = {{"weight_map", {{"a", "shard.safetensors"}}}};
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.error().message, AllOf(HasSubstr("shard.safetensors"), HasSubstr("'a'")));
}

TEST_F(CheckpointTest, ShardNameCannotEscapeTheDirectory) {
  const nlohmann::json index = {{"weight_map", {{"a", "../etc/passwd"}}}};
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.error().message, HasSubstr("plain file name"));
}

TEST_F(CheckpointTest, NoWeightsAtAll) {
  auto checkpoint = Checkpoint::open(dir_.string());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.error().message, HasSubstr("no model.safetensors"));
}

template <typename T>
Status status_of(const Result<T>& result) {
  if (result.ok()) return ok_status();
  return result.error();
}

// Runs `open` (which must return promptly) on another thread. A loader that blocks in open() on
// the FIFO `fifo` is released by opening its write end, and the test fails instead of hanging.
std::string error_without_hanging(const fs::path& fifo, const std::function<Status()>& open) {
  auto result = std::async(std::launch::async, open);
  if (result.wait_for(std::chrono::seconds(10)) == std::future_status::timeout) {
    ADD_FAILURE() << "opening " << fifo << " blocked (waiting for a writer)";
    const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    result.wait();
    if (writer >= 0) ::close(writer);
    return "";
  }
  const Status status = result.get();
  EXPECT_FALSE(status.ok());
  return status.ok() ? "" : status.error().message;
}

TEST_F(CheckpointTest, FifoInPlaceOfTheWeightsIsRefusedByName) {
  const fs::path fifo = dir_ / "model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto open_file = [&] { return status_of(SafetensorsFile::open(fifo.string())); };
  EXPECT_THAT(error_without_hanging(fifo, open_file),
              AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
  const auto open_dir = [&] { return status_of(Checkpoint::open(dir_.string())); };
  EXPECT_THAT(error_without_hanging(fifo, open_dir), AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
}

TEST_F(CheckpointTest, FifoInPlaceOfAShardIsRefusedByName) {
  write_raw("model-00001-of-00002.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  const fs::path fifo = dir_ / "model-00002-of-00002.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const nlohmann::json index = {
      {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  const auto open_dir = [&] { return status_of(Checkpoint::open(dir_.string())); };
  EXPECT_THAT(error_without_hanging(fifo, open_dir), AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
}

TEST_F(CheckpointTest, FifoInPlaceOfConfigJsonIsRefusedByName) {
  const fs::path fifo = dir_ / "config.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto read = [&] { return status_of(read_json_file(fifo.string())); };
  EXPECT_THAT(error_without_hanging(fifo, read), AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
  const auto load = [&] { return status_of(load_model_config(dir_.string())); };
  EXPECT_THAT(error_without_hanging(fifo, load), AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
  // A directory is not a JSON file either (std::ifstream opened it and read nothing).
  EXPECT_THAT(read_json_file(dir_.string()).error().message, HasSubstr("not a regular file"));
}

// tokenizer.json and the chat template are read the same way (base/text_file.h).
TEST_F(CheckpointTest, FifoInPlaceOfTokenizerJsonIsRefusedByName) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    for (const auto& file : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
      fs::remove(dir_ / file);
      fs::copy_file(fs::path(testing::demo_model()) / file, dir_ / file);
    }
    const fs::path fifo = dir_ / name;
    fs::remove(fifo);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const auto load = [&] { return status_of(Tokenizer::from_dir(dir_.string())); };
    EXPECT_THAT(error_without_hanging(fifo, load), AllOf(HasSubstr(name), HasSubstr("not a regular file")));
    const auto read = [&] { return status_of(read_text_file(fifo.string())); };
    EXPECT_THAT(error_without_hanging(fifo, read), AllOf(HasSubstr(fifo.string()), HasSubstr("not a regular file")));
  }
}

TEST(ShardedCheckpoint, DemoModelResolvesEveryTensorToItsShard) {
  auto checkpoint = Checkpoint::open(testing::demo_model());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  const auto index = nlohmann::json::parse(std::ifstream(testing::demo_model() + "/model.safetensors.index.json"));
  EXPECT_EQ(checkpoint->tensor_names().size(), index["weight_map"].size());
  for (const auto& [name, shard] : index["weight_map"].items()) {
    EXPECT_THAT(checkpoint->file_of(name), HasSubstr(shard.get<std::string>())) << name;
  }
}

}  // namespace
}  // namespace moeserve
