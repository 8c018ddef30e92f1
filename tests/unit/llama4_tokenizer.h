// Llama 4's tokenizer for the tests, in the Hugging Face layout the hub's Llama 4 repositories
// publish. Those repositories are gated, so their tokenizer.json is not in tests/fixtures;
// Meta's own BPE file is (tokenizers/llama4/tokenizer.model, tiktoken format: one
// "<base64 bytes> <rank>" line per token, ranks 0..199999). llama4_tokenizer_dir() rebuilds
// tokenizer.json from it once per process, as transformers' Llama 4 conversion
// (TikTokenConverter) wrote the hub's:
// - model: byte-level BPE; vocab = every token's bytes through GPT-2's byte-to-unicode map, id =
//   rank; merges = for each token in rank order, every split into two tokens of the vocabulary,
//   ordered by the pieces' ranks; ignore_merges (a whole piece in the vocabulary is one token);
// - pre-tokenizer: Split by the O200K pattern (isolated), then ByteLevel without its own regex;
// - decoder ByteLevel; post-processor ByteLevel then "<|begin_of_text|> $A";
// - added tokens: Meta's 1,134 special tokens from id 200000 (basic, text post-train, vision),
//   then the pad token the conversion names, "<|finetune_right_pad_id|>", which is not among
//   them and so is appended (201134).
// tokenizer_config.json (bos, eos <|eot|>, the chat template) is copied from the fixture.
// The reference encodings it is held to come from OpenAI's tiktoken on Meta's file
// (tests/fixtures/tools/make_llama4_tokenizer_reference.js), not from this conversion.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve::testing_llama4 {

inline std::string base64_decode(const std::string& text) {
  std::string out;
  int bits = 0, value = 0;
  for (char c : text) {
    int digit = -1;
    if (c >= 'A' && c <= 'Z') digit = c - 'A';
    if (c >= 'a' && c <= 'z') digit = c - 'a' + 26;
    if (c >= '0' && c <= '9') digit = c - '0' + 52;
    if (c == '+') digit = 62;
    if (c == '/') digit = 63;
    if (digit < 0) continue;  // '=' padding
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((value >> bits) & 0xff));
    }
  }
  return out;
}

// GPT-2's byte-to-unicode map, each byte's character as UTF-8.
inline std::array<std::string, 256> byte_level_chars() {
  std::array<std::string, 256> chars;
  int next = 256;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174);
    const int code = printable ? byte : next++;
    std::string utf8;
    if (code < 0x80) {
      utf8 = std::string(1, static_cast<char>(code));
    } else {
      utf8 = {static_cast<char>(0xc0 | (code >> 6)), static_cast<char>(0x80 | (code & 0x3f))};
    }
    chars[byte] = utf8;
  }
  return chars;
}

inline std::vector<std::string> special_tokens() {
  std::vector<std::string> tokens = {"<|begin_of_text|>", "<|end_of_text|>",  "<|fim_prefix|>", "<|fim_middle|>",
                                     "<|fim_suffix|>",    "<|header_start|>", "<|header_end|>", "<|eom|>",
                                     "<|eot|>",           "<|step|>"};
  for (int i = 0; i < 6; ++i) tokens.push_back("<|text_post_train_reserved_special_token_" + std::to_string(i) + "|>");
  for (const char* name : {"<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"}) tokens.push_back(name);
  for (int i = 8; i < 69; ++i) tokens.push_back("<|text_post_train_reserved_special_token_" + std::to_string(i) + "|>");
  for (const char* name : {"<|image_start|>", "<|image_end|>", "<|vision_reserved_special_token_0|>",
                           "<|vision_reserved_special_token_1|>", "<|tile_x_separator|>", "<|tile_y_separator|>",
                           "<|vision_reserved_special_token_2|>", "<|vision_reserved_special_token_3|>",
                           "<|vision_reserved_special_token_4|>", "<|vision_reserved_special_token_5|>", "<|image|>",
                           "<|vision_reserved_special_token_6|>", "<|patch|>"}) {
    tokens.push_back(name);
  }
  for (int i = 7; i < 1048; ++i) tokens.push_back("<|vision_reserved_special_token_" + std::to_string(i) + "|>");
  return tokens;  // 1,134
}

inline constexpr const char* kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// tokenizer.json from the tiktoken file at `model_path`, as described above.
inline std::string tokenizer_json_from_tiktoken(const std::string& model_path) {
  std::ifstream in(model_path);
  EXPECT_TRUE(in) << model_path;
  std::vector<std::string> tokens;  // [rank] -> bytes
  std::unordered_map<std::string, int> rank_of;
  std::string encoded;
  int rank = 0;
  while (in >> encoded >> rank) {
    if (static_cast<int>(tokens.size()) <= rank) tokens.resize(rank + 1);
    tokens[rank] = base64_decode(encoded);
    rank_of.emplace(tokens[rank], rank);
  }
  EXPECT_EQ(tokens.size(), 200000u);
  const std::array<std::string, 256> chars = byte_level_chars();
  const auto text = [&](const std::string& bytes) {
    std::string out;
    for (unsigned char byte : bytes) out += chars[byte];
    return out;
  };
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json merges = nlohmann::json::array();
  for (size_t r = 0; r < tokens.size(); ++r) {
    const std::string& token = tokens[r];
    vocab[text(token)] = r;
    std::vector<std::pair<int, int>> splits;  // (left rank, right rank)
    for (size_t at = 1; at < token.size(); ++at) {
      const auto left = rank_of.find(token.substr(0, at));
      const auto right = rank_of.find(token.substr(at));
      if (left != rank_of.end() && right != rank_of.end()) splits.emplace_back(left->second, right->second);
    }
    std::sort(splits.begin(), splits.end());
    for (const auto& [left, right] : splits) merges.push_back({text(tokens[left]), text(tokens[right])});
  }
  nlohmann::json added = nlohmann::json::array();
  std::vector<std::string> specials = special_tokens();
  specials.push_back("<|finetune_right_pad_id|>");
  for (size_t i = 0; i < specials.size(); ++i) {
    added.push_back({{"id", 200000 + i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  nlohmann::json json = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kO200kPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level}}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
          {{"type", "TemplateProcessing"},
           {"single",
            {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
           {"pair",
            {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
             {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 1}}}},
             {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
           {"special_tokens",
            {{"<|begin_of_text|>",
              {{"id", "<|begin_of_text|>"}, {"ids", {200000}}, {"tokens", {"<|begin_of_text|>"}}}}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", true},
        {"vocab", vocab},
        {"merges", merges}}}};
  return json.dump();
}

// A directory holding the rebuilt tokenizer.json and the fixture's tokenizer_config.json, made
// once per process under the test's temporary directory.
inline const std::string& llama4_tokenizer_dir() {
  static const std::string dir = [] {
    const std::filesystem::path fixture = std::filesystem::path(MOESERVE_TEST_DATA_DIR) / "tokenizers" / "llama4";
    const std::filesystem::path out = std::filesystem::path(::testing::TempDir()) / "moeserve-llama4-tokenizer";
    std::filesystem::create_directories(out);
    std::ofstream(out / "tokenizer.json") << tokenizer_json_from_tiktoken((fixture / "tokenizer.model").string());
    std::filesystem::copy_file(fixture / "tokenizer_config.json", out / "tokenizer_config.json",
                               std::filesystem::copy_options::overwrite_existing);
    return out.string();
  }();
  return dir;
}

}  // namespace moeserve::testing_llama4
