// `moeserve tokenize` / `moeserve detokenize` end to end: the built binary
// against the Hugging Face reference ids and texts, and clear failures on bad
// input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "cli_runner.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

using moeserve::testing::CommandResult;
using moeserve::testing::run_moeserve;

Json reference() {
  return Json::parse(std::ifstream(std::string(MOESERVE_TEST_DATA_DIR) +
                                   "/tokenizer_reference.json"));
}

std::string ids_arg(const std::vector<int32_t> &ids) {
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i)
    joined += (i ? "," : "") + std::to_string(ids[i]);
  return joined;
}

TEST(TokenizerCli, TokenizeAndDetokenizeMatchReference) {
  const Json data = reference();
  // Every Mistral text; the first Qwen3 and GPT-OSS texts (each run loads the
  // 150k- or 200k-entry vocabulary).
  for (const auto &[name, count] :
       {std::pair<std::string, size_t>{"mistral", 17}, {"qwen3", 5}, {"gptoss", 5}}) {
    const std::string dir =
        std::string(MOESERVE_TEST_DATA_DIR) + "/tokenizers/" + name;
    for (size_t index = 0; index < count; ++index) {
      const Json &c = data[name]["encode"].at(index);
      const std::string text = c["text"];
      auto with_special =
          run_moeserve({"tokenize", dir, "--text", text, "--json"});
      ASSERT_EQ(with_special.exit_code, 0) << with_special.output;
      EXPECT_EQ(Json::parse(with_special.out)["ids"], c["ids"])
          << name << ": " << text;
      auto plain = run_moeserve(
          {"tokenize", dir, "--text", text, "--no-special", "--json"});
      ASSERT_EQ(plain.exit_code, 0) << plain.output;
      EXPECT_EQ(Json::parse(plain.out)["ids"], c["ids_no_special"])
          << name << ": " << text;
      const std::string ids = ids_arg(c["ids"].get<std::vector<int32_t>>());
      if (ids.empty())
        continue;
      auto decoded = run_moeserve({"detokenize", dir, "--ids", ids, "--json"});
      ASSERT_EQ(decoded.exit_code, 0) << decoded.output;
      EXPECT_EQ(Json::parse(decoded.out)["text"], c["decoded"])
          << name << ": " << text;
      auto skipped = run_moeserve(
          {"detokenize", dir, "--ids", ids, "--skip-special", "--json"});
      ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
      EXPECT_EQ(Json::parse(skipped.out)["text"], c["decoded_skip_special"])
          << name << ": " << text;
    }
  }
}

TEST(TokenizerCli, PlainOutputIsReadable) {
  const std::string dir =
      std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
  auto listing = run_moeserve({"tokenize", dir, "--text", "The LORD"});
  ASSERT_EQ(listing.exit_code, 0) << listing.output;
  EXPECT_THAT(listing.output, HasSubstr("4 tokens"));
  EXPECT_THAT(listing.output, HasSubstr("\"<s>\"  (special)"));
  EXPECT_THAT(listing.output, HasSubstr("\"▁The\""));
  auto text = run_moeserve(
      {"detokenize", dir, "--ids", "1,415,393,6276", "--skip-special"});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_EQ(text.output, "The LORD\n");
}

TEST(TokenizerCli, BadInputFailsWithAMessage) {
  const std::string dir =
      std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny";
  auto bad_ids = run_moeserve({"detokenize", dir, "--ids", "1,x"});
  EXPECT_EQ(bad_ids.exit_code, 1);
  EXPECT_THAT(bad_ids.output,
              HasSubstr("not a comma-separated list of token ids"));
  auto out_of_range = run_moeserve({"detokenize", dir, "--ids", "99999"});
  EXPECT_EQ(out_of_range.exit_code, 1);
  EXPECT_THAT(out_of_range.output, HasSubstr("outside the vocabulary"));
  auto no_dir = run_moeserve({"tokenize", "/nonexistent", "--text", "hi"});
  EXPECT_EQ(no_dir.exit_code, 1);
  EXPECT_THAT(no_dir.output, HasSubstr("no tokenizer.json"));
}

} // namespace
} // namespace moeserve
