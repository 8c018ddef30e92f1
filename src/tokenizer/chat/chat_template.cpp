// ChatTemplate: parsing, the render context transformers builds (messages, tools=None,
// documents=None, add_generation_prompt, special tokens, caller variables), and reading a
// model directory's template and special tokens.
#include "tokenizer/chat/chat_template.h"


#include "base/text_file.h"
#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/parser.h"

namespace moeserve::chat {

Result<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  MS_ASSIGN_OR_RETURN(Body body, parse_template(source));
  ChatTemplate chat_template;
  chat_template.body_ = std::make_shared<const Body>(std::move(body));
  return chat_template;
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& messages, const RenderOptions& options) const {
  if (!messages.is_array()) return make_error("messages must be a JSON array, got {}", messages.type_name());
  if (!options.extra_context.is_object()) return make_error("extra template variables must be a JSON object");
  auto globals = std::make_shared<Scope>();
  add_global_functions(*globals, options.now);
  globals->set("tools", Value(None{}));
  globals->set("documents", Value(None{}));
  if (!options.bos_token.empty()) globals->set("bos_token", Value(options.bos_token));
  if (!options.eos_token.empty()) globals->set("eos_token", Value(options.eos_token));
  for (const auto& [name, value] : options.extra_context.items()) globals->set(name, Value::from_json(value));
  globals->set("messages", Value::from_json(messages));
  globals->set("add_generation_prompt", Value(options.add_generation_prompt));
  Interpreter interpreter(options.limits);
  return interpreter.render(*body_, std::make_shared<Scope>(globals));
}

namespace {

// A special token in tokenizer_config.json: a string, {"content": ...}, or null.
std::string token_text(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

Result<std::string> pick_template(const nlohmann::json& field, const std::string& template_name) {
  if (field.is_string()) {
    if (!template_name.empty() && template_name != "default") {
      return make_error("the model has a single chat template; there is no template named '{}'", template_name);
    }
    return field.get<std::string>();
  }
  if (!field.is_array()) return make_error("chat_template must be a string or a list of {{name, template}}");
  std::string wanted = template_name.empty() ? "default" : template_name;
  std::string names;
  for (const auto& entry : field) {
    if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") || !entry["name"].is_string() ||
        !entry["template"].is_string()) {
      return make_error("chat_template list entries must be {{\"name\": ..., \"template\": ...}}");
    }
    if (entry["name"] == wanted) return entry["template"].get<std::string>();
    names += (names.empty() ? "" : ", ") + entry["name"].get<std::string>();
  }
  return make_error("no chat template named '{}' (available: {})", wanted, names);
}

}  // namespace

Result<ChatTemplateConfig> load_chat_template_config(const std::filesystem::path& model_dir,
                                                     const std::string& template_name) {
  ChatTemplateConfig config;
  std::filesystem::path config_path = model_dir / "tokenizer_config.json";
  nlohmann::json json = nlohmann::json::object();
  if (std::filesystem::exists(config_path)) {
    MS_ASSIGN_OR_RETURN(std::string text, read_text_file(config_path.string()));
    json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) return make_error("{} is not a JSON object", config_path.string());
    config.bos_token = token_text(json, "bos_token");
    config.eos_token = token_text(json, "eos_token");
  }
  std::filesystem::path jinja_path = model_dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path) && (template_name.empty() || template_name == "default")) {
    MS_ASSIGN_OR_RETURN(config.chat_template, read_text_file(jinja_path.string()));
    return config;
  }
  auto field = json.find("chat_template");
  if (field == json.end() || field->is_null()) {
    return make_error("{} has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja)",
                      model_dir.string());
  }
  MS_ASSIGN_OR_RETURN(config.chat_template, pick_template(*field, template_name));
  return config;
}

}  // namespace moeserve::chat
