// DeepSeek-V3.2's published prompt encoder (chat/deepseek_v32_encoding.h), rule by rule.
#include "tokenizer/chat/deepseek_v32_encoding.h"

#include <string_view>

#include <fmt/format.h>

#include "tokenizer/chat/value.h"

namespace moeserve::chat {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kThinkStart = "<think>";
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kDsml = "｜DSML｜";
constexpr std::string_view kUser = "<｜User｜>";
constexpr std::string_view kAssistant = "<｜Assistant｜>";
// The system prompt of the tools, around their JSON schemas (one per line).
constexpr std::string_view kToolsBefore = R"(## Tools
You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<｜DSML｜function_calls>" block like the following as part of your reply to the user:
<｜DSML｜function_calls>
<｜DSML｜invoke name="$FUNCTION_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$FUNCTION_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜function_calls>
String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).
If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:
<｜DSML｜function_calls>
...
</｜DSML｜function_calls>
<function_results>
...
</function_results>
<think>...thinking about results</think>
Here are the functions available in JSONSchema format:
<functions>
)";
constexpr std::string_view kToolsAfter = "\n</functions>\n";
constexpr std::string_view kResponseFormat =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

// Python's truth value of a JSON value.
bool truthy(const Json* value) {
  if (value == nullptr || value->is_null()) return false;
  if (value->is_boolean()) return value->get<bool>();
  if (value->is_number()) return value->get<double>() != 0.0;
  if (value->is_string()) return !value->get_ref<const std::string&>().empty();
  return !value->empty();
}

// msg.get(key): nullptr when absent.
const Json* field(const Json& message, const char* key) {
  if (!message.is_object()) return nullptr;
  const auto it = message.find(key);
  return it == message.end() ? nullptr : &*it;
}

// json.dumps(value, ensure_ascii=False).
Result<std::string> to_json(const Json& value) { return to_json_text(Value::from_json(value), JsonDumpOptions{}); }

// A text field as str.format writes it: the string, "None" for null (JSON for anything else).
Result<std::string> text_of(const Json* value) {
  if (value == nullptr || value->is_null()) return std::string("None");
  if (value->is_string()) return value->get<std::string>();
  return to_json(*value);
}

Result<std::string> render_tools(const Json& tools) {
  std::string out(kToolsBefore);
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json* function = field(tools[i], "function");
    if (function == nullptr) return make_error("tools[{}] has no `function`", i);
    MS_ASSIGN_OR_RETURN(std::string schema, to_json(*function));
    if (i > 0) out += '\n';
    out += schema;
  }
  out += kToolsAfter;
  return out;
}

// What a system or developer message adds for its tools and its response format, where it has them.
Result<std::string> tools_and_format(const Json* tools, const Json* response_format) {
  std::string out;
  if (truthy(tools)) {
    MS_ASSIGN_OR_RETURN(std::string text, render_tools(*tools));
    out += "\n\n" + text;
  }
  if (truthy(response_format)) {
    MS_ASSIGN_OR_RETURN(std::string schema, to_json(*response_format));
    out += fmt::format("\n\n{}{}", kResponseFormat, schema);
  }
  return out;
}

// One call's arguments as <｜DSML｜parameter> lines: strings as they are, other values as JSON.
Result<std::string> dsml_arguments(const Json& function, size_t index) {
  const Json* raw = field(function, "arguments");
  Json arguments = raw == nullptr ? Json() : *raw;
  if (arguments.is_string()) arguments = Json::parse(arguments.get<std::string>(), nullptr, false);
  if (!arguments.is_object()) {
    return make_error("tool_calls[{}].function.arguments must be a JSON object (DeepSeek-V3.2 writes each as a "
                      "parameter)",
                      index);
  }
  std::string out;
  for (auto it = arguments.begin(); it != arguments.end(); ++it) {
    const bool is_string = it.value().is_string();
    std::string value;
    if (is_string) {
      value = it.value().get<std::string>();
    } else {
      MS_ASSIGN_OR_RETURN(value, to_json(it.value()));
    }
    if (it != arguments.begin()) out += '\n';
    out += fmt::format(R"(<{}parameter name="{}" string="{}">{}</{}parameter>)", kDsml, it.key(),
                       is_string ? "true" : "false", value, kDsml);
  }
  return out;
}

int last_user_index(const Json& messages) {
  for (int i = static_cast<int>(messages.size()) - 1; i >= 0; --i) {
    const Json* role = field(messages[i], "role");
    if (role != nullptr && (*role == "user" || *role == "developer")) return i;
  }
  return -1;
}

// render_message of the published encoder; `shift`: how many messages were inserted before the
// request's (its tools' system message), for the error messages.
Result<std::string> render_message(int index, const Json& messages, bool thinking, int shift) {
  const Json& message = messages[index];
  const int last_user = last_user_index(messages);
  const std::string where = fmt::format("messages[{}]", index - shift);
  const Json* role_field = field(message, "role");
  const std::string role = role_field != nullptr && role_field->is_string() ? role_field->get<std::string>() : "";
  const Json* content = field(message, "content");
  const Json* tools = field(message, "tools");
  const Json* response_format = field(message, "response_format");
  const Json* tool_calls = field(message, "tool_calls");
  const Json* reasoning = field(message, "reasoning");
  if (!truthy(reasoning)) reasoning = field(message, "reasoning_content");
  const bool opens_thinking = thinking && index == last_user;
  std::string prompt;
  if (role == "system") {
    if (truthy(content)) {
      MS_ASSIGN_OR_RETURN(prompt, text_of(content));
    }
    MS_ASSIGN_OR_RETURN(std::string extra, tools_and_format(tools, response_format));
    prompt += extra;
  } else if (role == "developer") {
    if (!truthy(content)) return make_error("{}: a developer message needs content", where);
    MS_ASSIGN_OR_RETURN(std::string body, tools_and_format(tools, response_format));
    MS_ASSIGN_OR_RETURN(std::string text, text_of(content));
    body += "\n\n# The user's message is: " + text;
    prompt = fmt::format("{}{}{}{}", kUser, body, kAssistant, opens_thinking ? kThinkStart : kThinkEnd);
  } else if (role == "user") {
    MS_ASSIGN_OR_RETURN(std::string text, text_of(content));
    prompt = fmt::format("{}{}{}{}", kUser, text, kAssistant, opens_thinking ? kThinkStart : kThinkEnd);
  } else if (role == "tool") {
    // The assistant turn whose calls this result answers: back over the results before it (an
    // index below 0 reads from the end, as Python's does).
    const int n = static_cast<int>(messages.size());
    const auto at = [&](int i) -> const Json& { return messages[i < 0 ? i + n : i]; };
    int previous = index - 1;
    const auto is_tool = [&](int i) {
      const Json* role = field(at(i), "role");
      return role != nullptr && *role == "tool";
    };
    while (previous >= 0 && is_tool(previous)) --previous;
    const Json& assistant = at(previous);
    const Json* assistant_role = field(assistant, "role");
    const bool after_assistant = previous >= 0 && assistant_role != nullptr && *assistant_role == "assistant";
    const Json* calls = field(assistant, "tool_calls");
    const int order = index - previous;
    if ((index != 0 && !after_assistant) || !truthy(calls) || !calls->is_array() ||
        static_cast<int>(calls->size()) < order) {
      return make_error("{}: a tool result must follow an assistant message with a tool call for it", where);
    }
    if (order == 1) prompt += "\n\n<function_results>";
    MS_ASSIGN_OR_RETURN(std::string text, text_of(content));
    prompt += "\n<result>" + text + "</result>";
    if (order == static_cast<int>(calls->size())) {
      prompt += "\n</function_results>\n\n";
      prompt += thinking && index >= last_user ? kThinkStart : kThinkEnd;
    }
  } else if (role == "assistant") {
    std::string calls_text;
    if (truthy(tool_calls)) {
      if (!tool_calls->is_array()) return make_error("{}.tool_calls must be an array", where);
      std::string invokes;
      for (size_t i = 0; i < tool_calls->size(); ++i) {
        const Json* function = field((*tool_calls)[i], "function");
        if (function == nullptr) return make_error("{}.tool_calls[{}] has no `function`", where, i);
        MS_ASSIGN_OR_RETURN(std::string name, text_of(field(*function, "name")));
        MS_ASSIGN_OR_RETURN(std::string arguments, dsml_arguments(*function, i));
        if (i > 0) invokes += '\n';
        invokes += fmt::format("<{}invoke name=\"{}\">\n{}\n</{}invoke>", kDsml, name, arguments, kDsml);
      }
      calls_text = fmt::format("\n\n<{}function_calls>\n{}\n</{}function_calls>", kDsml, invokes, kDsml);
    }
    std::string thinking_part;
    if (thinking && index > last_user) {
      if (!truthy(reasoning) && !truthy(tool_calls)) {
        return make_error("{}: in thinking mode an assistant message after the last user message needs its "
                          "reasoning (reasoning_content) or tool calls",
                          where);
      }
      if (truthy(reasoning)) {
        MS_ASSIGN_OR_RETURN(thinking_part, text_of(reasoning));
      }
      thinking_part += kThinkEnd;
    }
    std::string text;
    if (truthy(content)) {
      MS_ASSIGN_OR_RETURN(text, text_of(content));
    }
    prompt = thinking_part + text + calls_text + std::string(kEos);
  } else {
    return make_error("{}: role `{}` is not one DeepSeek-V3.2's encoding writes (system, developer, user, "
                      "assistant, tool)",
                      where, role);
  }
  return prompt;
}

// drop_thinking_messages: before the last user turn, assistant turns lose their reasoning and
// turns of other roles than user, system and tool are left out.
Json drop_thinking(const Json& messages) {
  const int last_user = last_user_index(messages);
  Json out = Json::array();
  for (int i = 0; i < static_cast<int>(messages.size()); ++i) {
    const Json& message = messages[i];
    const Json* role = field(message, "role");
    const std::string name = role != nullptr && role->is_string() ? role->get<std::string>() : "";
    if (name == "user" || name == "system" || name == "tool" || i >= last_user) {
      out.push_back(message);
    } else if (name == "assistant") {
      Json without = message;
      without.erase("reasoning_content");
      without.erase("reasoning");
      out.push_back(std::move(without));
    }
  }
  return out;
}

}  // namespace

Result<std::string> encode_deepseek_v32(const Json& messages, const Json& tools, bool thinking) {
  if (!messages.is_array() || messages.empty()) return make_error("messages must be a non-empty array");
  Json conversation = Json::array();
  int shift = 0;
  if (tools.is_array() && !tools.empty()) {
    conversation.push_back(Json{{"role", "system"}, {"tools", tools}});
    shift = 1;
  }
  for (const Json& message : messages) conversation.push_back(message);
  const Json* last_role = field(conversation.back(), "role");
  const int count = static_cast<int>(conversation.size());
  if (thinking && last_role != nullptr && *last_role == "user") conversation = drop_thinking(conversation);
  std::string prompt(kBos);
  for (int index = 0; index < count; ++index) {
    if (index >= static_cast<int>(conversation.size())) {
      // The published encoder drops them, then still counts them.
      return make_error("in thinking mode a developer message before the last user message cannot be written");
    }
    MS_ASSIGN_OR_RETURN(std::string text, render_message(index, conversation, thinking, shift));
    prompt += text;
  }
  return prompt;
}

}  // namespace moeserve::chat
