// Tokenizer construction: parses tokenizer.json into the pipeline's components and reads the
// transformers settings of tokenizer_config.json (special tokens, add_bos_token/add_eos_token,
// chat template).
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/text_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoders.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {

namespace {

Result<nlohmann::json> parse_json(std::string_view text, const char* what) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return make_error("{} is not valid JSON", what);
  if (!parsed.is_object()) return make_error("{} must hold a JSON object", what);
  return parsed;
}

// bos_token / eos_token: a string, an AddedToken object {"content": ...}, or null.
std::string special_token_content(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return "";
}

// transformers 4.x Llama-style fast tokenizers rebuild their post-processor from
// add_bos_token (default true) and add_eos_token (default false).
bool rebuilds_post_processor(const std::string& tokenizer_class) {
  for (const char* name : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
                           "GemmaTokenizer", "GemmaTokenizerFast"})
    if (tokenizer_class == name) return true;
  return false;
}

std::optional<std::string> chat_template_from_config(const nlohmann::json& config) {
  auto it = config.find("chat_template");
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string())
        return entry["template"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

Result<std::shared_ptr<const Tokenizer>> Tokenizer::from_dir(const std::string& dir) {
  const std::filesystem::path root(dir);
  const auto tokenizer_path = root / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_path))
    return make_error("{} has no tokenizer.json (only Hugging Face fast-tokenizer files are supported)", dir);
  MS_ASSIGN_OR_RETURN(std::string tokenizer_json, read_text_file(tokenizer_path.string()));
  std::string config_json;
  const auto config_path = root / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    MS_ASSIGN_OR_RETURN(config_json, read_text_file(config_path.string()));
  }
  auto loaded = from_json(tokenizer_json, config_json);
  if (!loaded.ok()) return loaded.error().with_context("loading tokenizer from " + dir);
  const auto template_path = root / "chat_template.jinja";
  if (!(*loaded)->chat_template_ && std::filesystem::exists(template_path)) {
    MS_ASSIGN_OR_RETURN(std::string source, read_text_file(template_path.string()));
    std::const_pointer_cast<Tokenizer>(*loaded)->chat_template_ = std::move(source);
  }
  return loaded;
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json) {
  // The parsers check types field by field; a nlohmann type error on a field they read with a
  // default (a null where a boolean belongs, ...) still becomes an error, never an escape.
  try {
    return parse_components(tokenizer_json, config_json);
  } catch (const nlohmann::json::exception& e) {
    return make_error("malformed tokenizer files: {}", e.what());
  }
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::parse_components(std::string_view tokenizer_json,
                                                                      std::string_view config_json) {
  MS_ASSIGN_OR_RETURN(nlohmann::json spec, parse_json(tokenizer_json, "tokenizer.json"));
  std::shared_ptr<Tokenizer> tokenizer(new Tokenizer());
  auto model_it = spec.find("model");
  if (model_it == spec.end() || !model_it->is_object()) return make_error("tokenizer.json has no \"model\" object");
  // Old files omit the model type; Hugging Face then infers it from the fields (BPE has merges).
  std::string model_type = model_it->value("type", model_it->contains("merges") ? "BPE" : "");
  if (model_type != "BPE")
    return make_error("unsupported tokenizer model type '{}' (supported: BPE)", model_type.empty() ? "<none>" : model_type);
  MS_ASSIGN_OR_RETURN(tokenizer->model_, tok::BpeModel::parse(*model_it));
  MS_ASSIGN_OR_RETURN(tokenizer->normalizer_, tok::parse_normalizer(spec.value("normalizer", nlohmann::json())));
  MS_ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_, tok::parse_pre_tokenizer(spec.value("pre_tokenizer", nlohmann::json())));
  MS_ASSIGN_OR_RETURN(tokenizer->post_processor_, tok::parse_post_processor(spec.value("post_processor", nlohmann::json())));
  MS_ASSIGN_OR_RETURN(tokenizer->decoder_, tok::parse_decoder(spec.value("decoder", nlohmann::json())));
  MS_ASSIGN_OR_RETURN(tok::AddedVocabulary added,
                      tok::AddedVocabulary::parse(spec.value("added_tokens", nlohmann::json()), tokenizer->normalizer_.get()));
  tokenizer->added_ = std::make_unique<tok::AddedVocabulary>(std::move(added));
  tokenizer->vocab_size_ = tokenizer->model_->max_id() + 1;
  for (const auto& token : tokenizer->added_->tokens()) tokenizer->vocab_size_ = std::max(tokenizer->vocab_size_, token.id + 1);
  MS_RETURN_IF_ERROR(tokenizer->load_config(config_json, !config_json.empty()));
  return std::shared_ptr<const Tokenizer>(std::move(tokenizer));
}

Status Tokenizer::load_config(std::string_view config_json, bool has_config) {
  if (!has_config) return ok_status();
  MS_ASSIGN_OR_RETURN(nlohmann::json config, parse_json(config_json, "tokenizer_config.json"));
  bos_token_ = special_token_content(config, "bos_token");
  eos_token_ = special_token_content(config, "eos_token");
  if (!bos_token_.empty()) {
    bos_id_ = token_to_id(bos_token_);
    if (!bos_id_) return make_error("tokenizer_config.json bos_token '{}' is not in the vocabulary", bos_token_);
  }
  if (!eos_token_.empty()) {
    eos_id_ = token_to_id(eos_token_);
    if (!eos_id_) return make_error("tokenizer_config.json eos_token '{}' is not in the vocabulary", eos_token_);
  }
  MS_ASSIGN_OR_RETURN(bool add_bos, tok::json_bool(config, "add_bos_token", false));
  MS_ASSIGN_OR_RETURN(bool add_eos, tok::json_bool(config, "add_eos_token", false));
  if (rebuilds_post_processor(config.value("tokenizer_class", ""))) {
    MS_ASSIGN_OR_RETURN(bool llama_bos, tok::json_bool(config, "add_bos_token", true));
    std::vector<int32_t> prefix, suffix;
    if (llama_bos && bos_id_) prefix.push_back(*bos_id_);
    if (add_eos && eos_id_) suffix.push_back(*eos_id_);
    post_processor_ = tok::make_affix_processor(std::move(prefix), std::move(suffix));
  } else {
    add_bos_ = add_bos && bos_id_.has_value();
    add_eos_ = add_eos && eos_id_.has_value();
  }
  chat_template_ = chat_template_from_config(config);
  return ok_status();
}

}  // namespace moeserve
