// `moeserve perplexity` end to end on the trained demo model (models/kjv-mixtral-tiny): the
// printed result and the --json fields, a one-window run equal to the perplexity computed here
// from `moeserve logits` of the same ids, held-out text (Revelation) scoring worse than training
// text (Genesis), the window count for --ctx-size / --stride / --max-chunks, and every bad input
// refused with a message and a non-zero exit, never a crash. Also scripts/kjv-revelation.sh,
// where the bible-kjv package is installed (`make deps`).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "reference_data.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using ::testing::HasSubstr;
using testing::run_moeserve;

// Revelation 21:1-7 (KJV): the book held out of the demo model's training.
const std::vector<std::string> kHeldOutVerses = {
    "And I saw a new heaven and a new earth: for the first heaven and the first earth were passed away; and there was no more sea.",
    "And I John saw the holy city, new Jerusalem, coming down from God out of heaven, prepared as a bride adorned for her husband.",
    "And I heard a great voice out of heaven saying, Behold, the tabernacle of God is with men, and he will dwell with them, and they shall be his people, and God himself shall be with them, and be their God.",
    "And God shall wipe away all tears from their eyes; and there shall be no more death, neither sorrow, nor crying, neither shall there be any more pain: for the former things are passed away.",
    "And he that sat upon the throne said, Behold, I make all things new. And he said unto me, Write: for these words are true and faithful.",
    "And he said unto me, It is done. I am Alpha and Omega, the beginning and the end. I will give unto him that is athirst of the fountain of the water of life freely.",
    "He that overcometh shall inherit all things; and I will be his God, and he shall be my son.",
};

// Genesis 1:1-8 (KJV): training text, much of which the model has memorised.
const std::vector<std::string> kTrainingVerses = {
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day.",
    "And God said, Let there be a firmament in the midst of the waters, and let it divide the waters from the waters.",
    "And God made the firmament, and divided the waters which were under the firmament from the waters which were above the firmament: and it was so.",
    "And God called the firmament Heaven. And the evening and the morning were the second day.",
};

// Verses as scripts/kjv-revelation.sh writes them, in the layout the model was trained on: one a
// line, every line after the first starting with a space (each verse was encoded on its own,
// SentencePiece's leading "▁" included, then the newline token).
std::string kjv_layout(const std::vector<std::string>& verses) {
  std::string text;
  for (size_t i = 0; i < verses.size(); ++i) text += (i ? " " : "") + verses[i] + "\n";
  return text;
}
const std::string kHeldOut = kjv_layout(kHeldOutVerses);
const std::string kTraining = kjv_layout(kTrainingVerses);

constexpr int32_t kBos = 1;  // the demo tokenizer's <s>, which it adds (add_bos_token)

class PerplexityCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("moeserve_ppl_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_file(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static std::vector<int32_t> tokenize(const std::string& text) {
    const CommandResult result =
        run_moeserve({"tokenize", testing::demo_model(), "--text", text, "--no-special", "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return nlohmann::json::parse(result.out)["ids"].get<std::vector<int32_t>>();
  }

  // Runs perplexity and returns its --json result (after checking it succeeded).
  nlohmann::json perplexity_json(const std::string& text_file, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"perplexity", testing::demo_model(), "--file", text_file,
                                     "--json",     path("out.json")};
    args.insert(args.end(), extra.begin(), extra.end());
    last_ = run_moeserve(args);
    EXPECT_EQ(last_.exit_code, 0) << last_.output;
    return nlohmann::json::parse(std::ifstream(path("out.json")));
  }

  fs::path dir_;
  CommandResult last_;
};

TEST_F(PerplexityCli, PrintsResultAndWritesJson) {
  const std::string file = write_file("held_out.txt", kHeldOut);
  const nlohmann::json result = perplexity_json(file, {"--ctx-size", "64", "--stride", "32"});
  for (const char* key :
       {"model", "file", "tokens", "tokens_scored", "ctx_size", "stride", "bos", "windows", "windows_total", "ppl",
        "ppl_stderr", "nll_mean", "nll_stderr", "dtype", "device", "seconds"}) {
    EXPECT_TRUE(result.contains(key)) << key << " missing from " << result.dump();
  }
  const int64_t tokens = static_cast<int64_t>(tokenize(kHeldOut).size());
  EXPECT_EQ(result["model"], testing::demo_model());
  EXPECT_EQ(result["file"], file);
  EXPECT_EQ(result["tokens"], tokens);
  EXPECT_EQ(result["tokens_scored"], tokens);  // BOS first: every text token is scored
  EXPECT_EQ(result["ctx_size"], 64);
  EXPECT_EQ(result["stride"], 32);
  EXPECT_EQ(result["bos"], true);
  EXPECT_EQ(result["dtype"], "auto");
  EXPECT_EQ(result["device"], "cpu");
  // 63 text tokens after BOS in the first window, then 32 more per window.
  const int64_t windows = 1 + (tokens - 63 + 31) / 32;
  EXPECT_EQ(result["windows"], windows);
  EXPECT_EQ(result["windows_total"], windows);
  const double ppl = result["ppl"], nll = result["nll_mean"], nll_stderr = result["nll_stderr"];
  EXPECT_NEAR(ppl, std::exp(nll), 1e-9 * ppl);
  EXPECT_GT(nll_stderr, 0.0);
  EXPECT_NEAR(result["ppl_stderr"].get<double>(), ppl * nll_stderr, 1e-9 * ppl);

  // stdout: the result; stderr: one progress line per window.
  std::smatch match;
  ASSERT_TRUE(std::regex_search(last_.out, match, std::regex(R"(^PPL = (\d+\.\d{4}) \+/- (\d+\.\d{5})\n)")))
      << last_.out;
  EXPECT_NEAR(std::stod(match[1]), ppl, 6e-5);
  EXPECT_NEAR(std::stod(match[2]), result["ppl_stderr"].get<double>(), 6e-6);
  EXPECT_THAT(last_.out, HasSubstr("tokens scored: " + std::to_string(tokens) + " of " + std::to_string(tokens)));
  EXPECT_THAT(last_.err, HasSubstr("[1/" + std::to_string(windows) + "] tokens 0-63"));
  EXPECT_THAT(last_.err, HasSubstr("[" + std::to_string(windows) + "/" + std::to_string(windows) + "]"));
}

// One window over BOS + the whole text: the perplexity must equal the one computed from the
// logits `moeserve logits` writes for the same ids.
TEST_F(PerplexityCli, OneWindowMatchesLogitsCommand) {
  const std::string text = kTraining;
  const std::string file = write_file("training.txt", text);
  std::vector<int32_t> ids = tokenize(text);
  ids.insert(ids.begin(), kBos);
  const int ctx = static_cast<int>(ids.size());
  const nlohmann::json result = perplexity_json(file, {"--ctx-size", std::to_string(ctx)});
  EXPECT_EQ(result["windows"], 1);
  EXPECT_EQ(result["stride"], ctx / 2);

  std::string id_list;
  for (int32_t id : ids) id_list += (id_list.empty() ? "" : ",") + std::to_string(id);
  const CommandResult logits_run =
      run_moeserve({"logits", testing::demo_model(), "--ids", id_list, "--out", path("logits.safetensors")});
  ASSERT_EQ(logits_run.exit_code, 0) << logits_run.output;
  const testing::Reference logits_file(path("logits.safetensors"));
  const TensorView logits = logits_file.tensor("logits");  // float32 [ids, vocab]
  const int64_t vocab = logits.dim(1);
  double total = 0.0;
  for (size_t i = 1; i < ids.size(); ++i) {
    const float* row = logits.as<float>() + (i - 1) * vocab;
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]));
    total += std::log(sum) - row[ids[i]];
  }
  const double expected_ppl = std::exp(total / static_cast<double>(ids.size() - 1));
  EXPECT_EQ(result["tokens_scored"], static_cast<int64_t>(ids.size() - 1));
  EXPECT_NEAR(result["ppl"].get<double>() / expected_ppl, 1.0, 1e-4)
      << "perplexity " << result["ppl"] << ", from logits " << expected_ppl;
}

TEST_F(PerplexityCli, HeldOutTextScoresWorseThanTrainingText) {
  const nlohmann::json held_out = perplexity_json(write_file("held_out.txt", kHeldOut), {"--ctx-size", "64"});
  const nlohmann::json training = perplexity_json(write_file("training.txt", kTraining), {"--ctx-size", "64"});
  const double held_out_ppl = held_out["ppl"], training_ppl = training["ppl"];
  EXPECT_GT(held_out_ppl, 2.0 * training_ppl) << "held out " << held_out_ppl << ", training " << training_ppl;
  // Memorised: a token of Genesis costs well under a nat.
  EXPECT_LT(training["nll_mean"].get<double>(), 1.0) << training.dump();
}

TEST_F(PerplexityCli, DefaultsAndMaxChunks) {
  std::string long_text;
  for (int i = 0; i < 4; ++i) long_text += kTraining + kHeldOut;
  const std::string file = write_file("long.txt", long_text);
  const int64_t tokens = static_cast<int64_t>(tokenize(long_text).size());
  ASSERT_GT(tokens, 1024);
  const nlohmann::json all = perplexity_json(file);
  EXPECT_EQ(all["ctx_size"], 512);  // min(512, max_position_embeddings 4096)
  EXPECT_EQ(all["stride"], 256);
  const int64_t windows = 1 + (tokens - 511 + 255) / 256;
  EXPECT_EQ(all["windows"], windows);
  EXPECT_EQ(all["tokens_scored"], tokens);

  const nlohmann::json two = perplexity_json(file, {"--max-chunks", "2"});
  EXPECT_EQ(two["windows"], 2);
  EXPECT_EQ(two["windows_total"], windows);
  EXPECT_EQ(two["tokens_scored"], 511 + 256);
  EXPECT_THAT(last_.out, HasSubstr("in 2 of " + std::to_string(windows) + " windows"));
}

TEST_F(PerplexityCli, BadInputIsRefusedWithAMessage) {
  const std::string good = write_file("good.txt", kHeldOut);
  const std::string model = testing::demo_model();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"perplexity", model, "--file", path("missing.txt")}, "cannot open"},
      {{"perplexity", model, "--file", write_file("empty.txt", "")}, "is empty"},
      {{"perplexity", model, "--file", dir_.string()}, "not a regular file"},
      {{"perplexity", model, "--file", write_file("one.txt", "A")}, "perplexity needs at least 2"},
      {{"perplexity", model, "--file", write_file("bad.txt", "In the \xff\xfe beginning")}, "UTF-8"},
      {{"perplexity", model, "--file", good, "--ctx-size", "1"}, "--ctx-size"},
      {{"perplexity", model, "--file", good, "--ctx-size", "4097"}, "max-model-len"},
      {{"perplexity", model, "--file", good, "--ctx-size", "64", "--stride", "64"}, "--stride"},
      {{"perplexity", model, "--file", good, "--stride", "0"}, "--stride"},
      {{"perplexity", model, "--file", good, "--max-chunks", "0"}, "--max-chunks"},
      {{"perplexity", model, "--file", good, "--ctx-size", "abc"}, "--ctx-size"},
      {{"perplexity", model}, "--file"},
      {{"perplexity", testing::fixture_model("tiny-mixtral"), "--file", good}, "tokenizer.json"},
      {{"perplexity", path("no_such_model"), "--file", good}, "no_such_model"},
  };
  for (const Case& c : cases) {
    const CommandResult result = run_moeserve(c.args);
    std::string line;
    for (const std::string& arg : c.args) line += arg + " ";
    EXPECT_NE(result.exit_code, 0) << line;
    EXPECT_LT(result.exit_code, 128) << line << "\n" << result.output;  // not killed by a signal
    EXPECT_THAT(result.err, HasSubstr(c.message)) << line;
    EXPECT_THAT(result.out, ::testing::Not(HasSubstr("PPL ="))) << line;
  }
}

TEST_F(PerplexityCli, JsonPathThatCannotBeWrittenFails) {
  const std::string good = write_file("good.txt", kHeldOut);
  const CommandResult result = run_moeserve(
      {"perplexity", testing::demo_model(), "--file", good, "--json", path("no_dir/out.json"), "--ctx-size", "32"});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(result.err, HasSubstr("cannot write"));
}

// scripts/kjv-revelation.sh extracts the held-out book from Debian's bible-kjv-text, in the
// layout whose tokens are the ones the model was trained and held out on.
TEST_F(PerplexityCli, RevelationScriptExtractsTheBook) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the bible program (packages bible-kjv, bible-kjv-text; make deps) is not installed";
  }
  const std::string script = std::string(MOESERVE_MODELS_DIR) + "/../scripts/kjv-revelation.sh";
  const CommandResult result = testing::run_command({script, path("revelation.txt")});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream in(path("revelation.txt"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 404u);  // Revelation's 404 verses, one a line
  EXPECT_EQ(lines.front().rfind("The Revelation of Jesus Christ, which God gave unto him", 0), 0u) << lines.front();
  EXPECT_EQ(lines.back(), " The grace of our Lord Jesus Christ be with you all. Amen.");
  // In the training layout the file's tokens are the held-out tokens train.log counted.
  std::ifstream log(testing::demo_model() + "/train.log");
  std::string word;
  int64_t holdout_tokens = -1;
  while (log >> word) {
    if (word == "holdout" && (log >> holdout_tokens)) break;
  }
  ASSERT_GT(holdout_tokens, 0) << "no 'holdout N' in train.log";
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  EXPECT_EQ(static_cast<int64_t>(tokenize(text).size()), holdout_tokens);
  const CommandResult bad = testing::run_command({script, path("x.txt"), "NoSuchBook99"});
  EXPECT_NE(bad.exit_code, 0);
}

}  // namespace
}  // namespace moeserve
