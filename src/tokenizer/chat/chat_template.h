// moeserve's chat-template engine: renders a model's Jinja2 chat template the way Hugging
// Face transformers' apply_chat_template does (jinja2 with trim_blocks, lstrip_blocks,
// loopcontrols, an immutable sandbox, and transformers' tojson / raise_exception /
// strftime_now). Parse once, render per request; a ChatTemplate is immutable and can be
// rendered from several threads at once.
#pragma once

#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "tokenizer/chat/interpreter.h"

namespace moeserve::chat {

// Errors raised by the template itself (raise_exception) carry this prefix and no line number:
// "chat template error: <the template's message>".
inline constexpr const char* kTemplateRaisedPrefix = "chat template error: ";

struct RenderOptions {
  bool add_generation_prompt = false;
  // Extra template variables: tools, documents, enable_thinking, ... (JSON object).
  // An ordered_json keeps key order (a plain nlohmann::json converts implicitly, keys sorted).
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
  // Special-token strings; an empty string leaves the variable undefined, as transformers
  // does for a tokenizer without that token (Qwen3 has no BOS).
  std::string bos_token, eos_token;
  // The date and time strftime_now() formats (GPT-OSS prints "Current date: %Y-%m-%d", Llama 3.x
  // "%d %b %Y"); unset, the current local time, as transformers does. Tests pin it.
  std::optional<std::tm> now;
  InterpreterLimits limits;
};

class ChatTemplate {
 public:
  // A syntax error comes back with its line and column.
  static Result<ChatTemplate> parse(std::string_view source);

  // `messages` must be a JSON array. Runtime errors, including the template's own
  // raise_exception, come back as errors (a client error: HTTP 400).
  Result<std::string> render(const nlohmann::ordered_json& messages, const RenderOptions& options) const;

 private:
  std::shared_ptr<const Body> body_;
};

// What a model directory says about chat formatting (tokenizer_config.json, or the
// chat_template.jinja file newer checkpoints ship beside it, which takes precedence).
struct ChatTemplateConfig {
  std::string chat_template;
  std::string bos_token;  // empty when the tokenizer has none
  std::string eos_token;
};

// `template_name` picks one of several named templates (empty: "default").
Result<ChatTemplateConfig> load_chat_template_config(const std::filesystem::path& model_dir,
                                                     const std::string& template_name = "");

}  // namespace moeserve::chat
