// `moeserve chat-template DIR --messages JSON [--add-generation-prompt] [--var
// name=JSONVALUE ...]
// [--chat-template FILE] [--template-name NAME] [--json]`: renders the model's
// chat template (from DIR/tokenizer_config.json or DIR/chat_template.jinja) the
// way transformers' apply_chat_template does, and prints the prompt; with
// --json, {"prompt": "...", "ids": [...]}, ids being the prompt encoded by
// DIR's tokenizer without added special tokens (as
// apply_chat_template(tokenize=True) does: the template writes BOS itself). A
// template that refuses the conversation (raise_exception) exits non-zero with
// its message.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "base/text_file.h"
#include "cli/commands.h"
#include "tokenizer/chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

struct ChatTemplateArgs {
  std::string model_dir;
  std::string messages;
  bool add_generation_prompt = false;
  std::vector<std::string> variables;
  std::string extra;
  std::string template_file;
  std::string template_name;
  bool json = false;
};

std::string read_file_or_fail(const std::string &path) {
  auto text = read_text_file(path);
  if (!text.ok())
    fail(text.error().message);
  return std::move(text.value());
}

// JSON text, or @FILE holding it.
nlohmann::ordered_json parse_json_or_fail(const std::string &what,
                                          const std::string &text) {
  std::string source =
      text.rfind('@', 0) == 0 ? read_file_or_fail(text.substr(1)) : text;
  auto json = nlohmann::ordered_json::parse(source, nullptr,
                                            /*allow_exceptions=*/false);
  if (json.is_discarded())
    fail(what + " is not valid JSON: " + source.substr(0, 200));
  return json;
}

void run_chat_template(const ChatTemplateArgs &args) {
  auto config =
      chat::load_chat_template_config(args.model_dir, args.template_name);
  std::string source;
  if (!args.template_file.empty()) {
    source = read_file_or_fail(args.template_file);
  } else if (!config.ok()) {
    fail(config.error().message);
  } else {
    source = config->chat_template;
  }
  chat::RenderOptions options;
  options.add_generation_prompt = args.add_generation_prompt;
  if (config.ok()) {
    options.bos_token = config->bos_token;
    options.eos_token = config->eos_token;
  }
  if (!args.extra.empty()) {
    options.extra_context = parse_json_or_fail("--extra", args.extra);
    if (!options.extra_context.is_object())
      fail("--extra must be a JSON object");
  }
  for (const std::string &variable : args.variables) {
    size_t equals = variable.find('=');
    if (equals == std::string::npos || equals == 0)
      fail("--var expects name=JSONVALUE, got '" + variable + "'");
    auto value = nlohmann::ordered_json::parse(variable.substr(equals + 1),
                                               nullptr, false);
    if (value.is_discarded()) {
      fail("--var " + variable.substr(0, equals) +
           ": value is not JSON (quote strings: name='\"text\"')");
    }
    options.extra_context[variable.substr(0, equals)] = value;
  }
  nlohmann::ordered_json messages =
      parse_json_or_fail("--messages", args.messages);
  auto chat_template = chat::ChatTemplate::parse(source);
  if (!chat_template.ok())
    fail(chat_template.error().message);
  auto prompt = chat_template->render(messages, options);
  if (!prompt.ok())
    fail(prompt.error().message);
  if (args.json) {
    auto tokenizer = Tokenizer::from_dir(args.model_dir);
    if (!tokenizer.ok())
      fail(tokenizer.error().message);
    auto ids = (*tokenizer)->encode(*prompt, /*add_special_tokens=*/false);
    if (!ids.ok())
      fail(ids.error().message);
    nlohmann::ordered_json out;
    out["prompt"] = *prompt;
    out["ids"] = *ids;
    std::cout << out.dump(-1, ' ', false,
                          nlohmann::ordered_json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << *prompt;
  }
}

} // namespace

void add_chat_template_command(CLI::App &app) {
  auto args = std::make_shared<ChatTemplateArgs>();
  CLI::App *command = app.add_subcommand(
      "chat-template", "Render a model's chat template for a conversation");
  command
      ->add_option("dir", args->model_dir,
                   "Model or tokenizer directory (tokenizer_config.json)")
      ->required();
  command
      ->add_option("--messages", args->messages,
                   "Conversation as a JSON array of {role, content} (or @FILE)")
      ->required();
  command->add_flag("--add-generation-prompt", args->add_generation_prompt,
                    "End with the assistant turn's header");
  command->add_option(
      "--var", args->variables,
      "Template variable name=JSONVALUE (tools, enable_thinking, ...)");
  command->add_option("--extra", args->extra,
                      "Template variables as one JSON object (or @FILE)");
  command->add_option("--chat-template", args->template_file,
                      "Use this Jinja template file instead of the model's");
  command->add_option("--template-name", args->template_name,
                      "Pick a named template (e.g. tool_use)");
  command->add_flag("--json", args->json,
                    "Print {\"prompt\": ..., \"ids\": [...]} as JSON (ids: the "
                    "prompt encoded without added special tokens)");
  command->callback([args] { run_chat_template(*args); });
}

} // namespace moeserve::cli
