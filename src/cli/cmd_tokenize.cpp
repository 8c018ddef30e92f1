// `moeserve tokenize DIR --text TEXT [--no-special] [--json]` and
// `moeserve detokenize DIR --ids 1,2,3 [--skip-special] [--json]`: the model directory's own
// tokenizer (tokenizer.json + tokenizer_config.json), as transformers' encode()/decode() would
// run it. --json prints {"ids": [...]} / {"text": "..."}; otherwise a readable listing.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

struct TokenizeArgs {
  std::string dir;
  std::string text;
  bool no_special = false;
  bool json = false;
};

struct DetokenizeArgs {
  std::string dir;
  std::string ids;
  bool skip_special = false;
  bool json = false;
};

std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& dir) {
  auto tokenizer = Tokenizer::from_dir(dir);
  if (!tokenizer.ok()) fail(tokenizer.error().message);
  return *tokenizer;
}

std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run_tokenize(const TokenizeArgs& args) {
  auto tokenizer = load_tokenizer(args.dir);
  auto ids = tokenizer->encode(args.text, !args.no_special);
  if (!ids.ok()) fail(ids.error().message);
  if (args.json) {
    std::printf("%s\n", json_text(nlohmann::json{{"ids", *ids}}).c_str());
    return;
  }
  std::printf("%zu tokens\n", ids->size());
  for (int32_t id : *ids) {
    const std::string token = tokenizer->id_to_token(id).value_or("");
    std::printf("%8d  %s%s\n", id, json_text(token).c_str(), tokenizer->is_special(id) ? "  (special)" : "");
  }
}

void run_detokenize(const DetokenizeArgs& args) {
  auto tokenizer = load_tokenizer(args.dir);
  std::vector<int32_t> ids;
  if (!args.ids.empty()) {
    auto parsed = parse_id_list(args.ids);
    if (!parsed.ok()) fail(parsed.error().message);
    ids = std::move(*parsed);
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= tokenizer->vocab_size()) fail(fmt::format("token id {} is outside the vocabulary (size {})", id, tokenizer->vocab_size()));
  }
  const std::string text = tokenizer->decode(ids, args.skip_special);
  if (args.json) std::printf("%s\n", json_text(nlohmann::json{{"text", text}}).c_str());
  else std::printf("%s\n", text.c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto tokenize = std::make_shared<TokenizeArgs>();
  CLI::App* command = app.add_subcommand("tokenize", "Encode text with a model directory's tokenizer");
  command->add_option("dir", tokenize->dir, "Directory with tokenizer.json (and tokenizer_config.json)")->required();
  command->add_option("--text", tokenize->text, "Text to encode")->required();
  command->add_flag("--no-special", tokenize->no_special, "Do not add special tokens (BOS/EOS, post-processor)");
  command->add_flag("--json", tokenize->json, "Print {\"ids\": [...]}");
  command->callback([tokenize] { run_tokenize(*tokenize); });

  auto detokenize = std::make_shared<DetokenizeArgs>();
  CLI::App* decode = app.add_subcommand("detokenize", "Decode token ids with a model directory's tokenizer");
  decode->add_option("dir", detokenize->dir, "Directory with tokenizer.json (and tokenizer_config.json)")->required();
  decode->add_option("--ids", detokenize->ids, "Comma-separated token ids")->required();
  decode->add_flag("--skip-special", detokenize->skip_special, "Leave special tokens out of the text");
  decode->add_flag("--json", detokenize->json, "Print {\"text\": \"...\"}");
  decode->callback([detokenize] { run_detokenize(*detokenize); });
}

}  // namespace moeserve::cli
