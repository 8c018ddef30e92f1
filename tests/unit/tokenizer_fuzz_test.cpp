// Seeded random tests beyond the fixtures: lossless round trips on generated multi-script
// text, arbitrary bytes (invalid UTF-8 included) into encode, arbitrary ids (out-of-range,
// lone byte-fallback bytes) into decode, and the incremental detokenizer equal to the full
// decode on random id streams. And encode_within against encode: the same ids whenever they fit
// the bound, nullopt exactly when they do not.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/tokenizer.h"

namespace moeserve {
namespace {

using Ids = std::vector<int32_t>;

std::shared_ptr<const Tokenizer> load(const std::string& name) {
  auto tokenizer = Tokenizer::from_dir(std::string(MOESERVE_TEST_DATA_DIR) + "/tokenizers/" + name);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  return tokenizer.ok() ? *tokenizer : nullptr;
}

// Random text from NFC-stable pieces of many scripts (so Qwen3's NFC normalizer keeps it),
// emoji sequences, whitespace runs and numbers. U+2581 is left out: Metaspace-style
// tokenizers decode it as a space by design. `with_special`: include special-token strings
// (Mistral's legacy normalizer prepends "▁" to the text after each, so it is not lossless there).
std::string random_text(std::mt19937& rng, bool with_special) {
  static const std::vector<std::string> pieces = {
      "a", "Z", "hello", " world", "  ", "\t", "\n", "\n\n", "    ", "'s", "'ll", "don't", "1", "42", "3.14159",
      "1234567", "-", "_", "(", ")", "{", "}", "**", "#", "é", "ñ", "ß", "Ł", "Ó", "Ω", "λόγος", "русский",
      "עברית", "العربية", "日本語", "の", "テキスト", "中文", "，", "！", "。", "한국어", "ไทย", "🚀", "🔥", "👨‍👩‍👧",
      "🇫🇷", "👍🏽", "𝔘𝔫𝔦", "\u00a0", "\u3000", "<|im_start|>", "<s>", "</s>", "<|endoftext|>", "x²", "½"};
  std::uniform_int_distribution<size_t> count(0, 24), pick(0, pieces.size() - 1);
  std::string text;
  for (size_t i = count(rng); i > 0; --i) {
    const std::string& piece = pieces[pick(rng)];
    if (with_special || piece.find('<') == std::string::npos) text += piece;
  }
  return text;
}

TEST(TokenizerFuzz, RoundTripsGeneratedText) {
  std::mt19937 rng(1234);
  for (const std::string name : {"qwen3", "deepseek_v3", "mistral", "gptoss"}) {
    auto tokenizer = load(name);
    ASSERT_TRUE(tokenizer);
    for (int trial = 0; trial < 400; ++trial) {
      const std::string text = random_text(rng, name != "mistral");
      auto ids = tokenizer->encode(text, false);
      ASSERT_TRUE(ids.ok()) << ids.error().message;
      EXPECT_EQ(tokenizer->decode(*ids, false), text) << name << " trial " << trial;
    }
  }
}

TEST(TokenizerFuzz, ArbitraryBytesNeverCrashEncode) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 64);
  for (const std::string name : {"qwen3", "deepseek_v3", "mistral", "gptoss"}) {
    auto tokenizer = load(name);
    ASSERT_TRUE(tokenizer);
    size_t accepted = 0;
    for (int trial = 0; trial < 2000; ++trial) {
      std::string bytes;
      for (int i = length(rng); i > 0; --i) bytes.push_back(static_cast<char>(trial % 2 ? byte(rng) : byte(rng) & 0x7F));
      auto ids = tokenizer->encode(bytes, true);
      if (!ids.ok()) continue;  // invalid UTF-8: a clean error
      ++accepted;
      EXPECT_EQ(tokenizer->decode(*ids, true), tokenizer->decode(*tokenizer->encode(bytes, false), true));
    }
    EXPECT_GT(accepted, 1000u);  // the ASCII half always encodes
  }
}

// encode_within(text, special, limit) is encode's ids when they are at most `limit`, else nullopt,
// on random text (and runs of one repeated piece, which make long single pre-tokenized pieces
// where the per-piece bound decides) for limits around the true count; for every tokenizer,
// the bundled model's (no pre-tokenizer: the whole text is one piece) included.
TEST(TokenizerFuzz, EncodeWithinIsEncodeOrNulloptExactlyWhenOver) {
  std::mt19937 rng(4242);
  std::vector<std::pair<std::string, std::shared_ptr<const Tokenizer>>> tokenizers;
  for (const std::string name : {"qwen3", "deepseek_v3", "mistral", "gptoss"}) tokenizers.emplace_back(name, load(name));
  auto kjv = Tokenizer::from_dir(std::string(MOESERVE_MODELS_DIR) + "/kjv-mixtral-tiny");
  ASSERT_TRUE(kjv.ok()) << kjv.error().message;
  tokenizers.emplace_back("kjv-mixtral-tiny", *kjv);
  std::uniform_int_distribution<int> parts(1, 6), repeats(1, 400);
  for (const auto& [name, tokenizer] : tokenizers) {
    ASSERT_TRUE(tokenizer);
    size_t over = 0, within = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      if (trial % 3 == 0) {
        const std::string piece = random_text(rng, false);
        for (int i = repeats(rng); i > 0; --i) text += piece;
      } else {
        for (int i = parts(rng); i > 0; --i) text += random_text(rng, name != "mistral");
      }
      for (const bool special : {false, true}) {
        const auto ids = tokenizer->encode(text, special);
        ASSERT_TRUE(ids.ok()) << ids.error().message;
        const size_t count = ids->size();
        for (const size_t limit :
             {size_t{0}, size_t{1}, count / 2, count > 0 ? count - 1 : 0, count, count + 1, count * 2 + 3}) {
          const auto bounded = tokenizer->encode_within(text, special, limit);
          ASSERT_TRUE(bounded.ok()) << bounded.error().message;
          if (count <= limit) {
            ASSERT_TRUE(bounded->has_value()) << name << " trial " << trial << " limit " << limit << " count " << count;
            EXPECT_EQ(**bounded, *ids) << name << " trial " << trial;
            ++within;
          } else {
            EXPECT_FALSE(bounded->has_value())
                << name << " trial " << trial << " limit " << limit << " count " << count;
            ++over;
          }
        }
      }
    }
    EXPECT_GT(over, 500u) << name;
    EXPECT_GT(within, 500u) << name;
  }
  // Invalid UTF-8 is the same error either way.
  EXPECT_FALSE(tokenizers.front().second->encode_within("\xff", false, 10).ok());
}

// Random ids, biased toward byte tokens (ByteLevel fragments of UTF-8, <0xXX> fallbacks) and
// special tokens, streamed after a clean prompt: the pieces must add up to the full decode.
TEST(TokenizerFuzz, IncrementalEqualsFullDecodeOnRandomIds) {
  std::mt19937 rng(7);
  for (const std::string name : {"qwen3", "deepseek_v3", "mistral", "gptoss"}) {
    auto tokenizer = load(name);
    ASSERT_TRUE(tokenizer);
    std::uniform_int_distribution<int32_t> any_id(-3, tokenizer->vocab_size() + 3), low_id(0, 300), kind(0, 3);
    const Ids prompt = *tokenizer->encode("Once upon a time", true);
    for (int trial = 0; trial < 1000; ++trial) {
      Ids generated;
      for (int i = 0; i < 24; ++i) generated.push_back(kind(rng) == 0 ? any_id(rng) : low_id(rng));
      for (bool skip : {false, true}) {
        Ids all = prompt;
        all.insert(all.end(), generated.begin(), generated.end());
        const std::string prompt_text = tokenizer->decode(prompt, skip);
        const std::string full = tokenizer->decode(all, skip);
        ASSERT_EQ(full.substr(0, prompt_text.size()), prompt_text);
        IncrementalDetokenizer detokenizer(tokenizer, prompt, skip);
        std::string streamed;
        for (int32_t id : generated) streamed += detokenizer.push(id);
        streamed += detokenizer.finish();
        EXPECT_EQ(streamed, full.substr(prompt_text.size())) << name << " trial " << trial << " skip " << skip;
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
