#include "server/tool_call_parser.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "server/pythonic_calls.h"
#include "server/stream_markers.h"
#include "tokenizer/chat/value.h"

namespace moeserve {
namespace {

constexpr std::string_view kHermesStart = "<tool_call>";
constexpr std::string_view kHermesEnd = "</tool_call>";
constexpr std::string_view kFunction = "<function=";
constexpr std::string_view kFunctionEnd = "</function>";
constexpr std::string_view kParameter = "<parameter=";
constexpr std::string_view kParameterEnd = "</parameter>";
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsmlCalls = "<｜DSML｜function_calls>";
constexpr std::string_view kKimiSection = "<|tool_calls_section_begin|>";
constexpr std::string_view kKimiCall = "<|tool_call_begin|>";
constexpr std::string_view kKimiArguments = "<|tool_call_argument_begin|>";
constexpr std::string_view kKimiCallEnd = "<|tool_call_end|>";
constexpr std::string_view kDsmlInvoke = "<｜DSML｜invoke name=\"";
constexpr std::string_view kDsmlInvokeEnd = "</｜DSML｜invoke>";
constexpr std::string_view kDsmlParameter = "<｜DSML｜parameter name=\"";
constexpr std::string_view kDsmlParameterEnd = "</｜DSML｜parameter>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kPythonStart = "<|python_start|>";
constexpr std::string_view kPythonEnd = "<|python_end|>";

std::string_view start_marker(ToolCallParser parser) {
  return parser == ToolCallParser::kHermes || parser == ToolCallParser::kQwen3Coder ? kHermesStart
         : parser == ToolCallParser::kDeepseekV32 ? kDsmlCalls
         : parser == ToolCallParser::kKimiK2      ? kKimiSection
                                                  : kCallsBegin;
}

std::string_view trim(std::string_view text) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

// hermes: the blocks after `calls` (the text from the first <tool_call>); false when one does
// not parse.
bool hermes_calls(std::string_view calls, std::vector<ToolCall>& out) {
  for (size_t at = calls.find(kHermesStart); at != std::string_view::npos; at = calls.find(kHermesStart, at)) {
    at += kHermesStart.size();
    const size_t end = calls.find(kHermesEnd, at);
    const std::string_view body = trim(calls.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
    const nlohmann::ordered_json call = nlohmann::ordered_json::parse(body, nullptr, false);
    if (call.is_discarded() || !call.is_object() || !call.contains("name") || !call["name"].is_string()) return false;
    const nlohmann::ordered_json arguments = call.value("arguments", nlohmann::ordered_json::object());
    auto text = chat::to_json_text(chat::Value::from_json(arguments), chat::JsonDumpOptions{});
    if (!text.ok()) return false;
    out.push_back(ToolCall{call["name"].get<std::string>(), *text});
    if (end == std::string_view::npos) break;
    at = end + kHermesEnd.size();
  }
  return !out.empty();
}

using OrderedJson = nlohmann::ordered_json;

// The JSON-schema `properties` of the request's tool `name` (empty when it has none).
OrderedJson tool_properties(const OrderedJson& tools, std::string_view name) {
  if (!tools.is_array()) return OrderedJson::object();
  for (const OrderedJson& tool : tools) {
    const auto function = tool.find("function");
    if (!tool.is_object() || function == tool.end() || !function->is_object() || function->value("name", "") != name) {
      continue;
    }
    const auto parameters = function->find("parameters");
    if (parameters == function->end() || !parameters->is_object()) return OrderedJson::object();
    const auto properties = parameters->find("properties");
    return properties != parameters->end() && properties->is_object() ? *properties : *parameters;
  }
  return OrderedJson::object();
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A qwen3_coder parameter's value typed by its schema (vLLM's _convert_param_value).
OrderedJson typed_value(const std::string& value, const std::string& name, const OrderedJson& properties) {
  if (lower(value) == "null") return nullptr;
  const auto schema = properties.find(name);
  if (schema == properties.end()) return value;
  std::string type = "string";
  if (schema->is_object() && schema->contains("type")) {
    const OrderedJson& t = (*schema)["type"];
    type = lower(trim(t.is_string() ? t.get<std::string>() : t.dump()));
  }
  const std::string_view number = trim(value);
  if (type == "string" || type == "str" || type == "text" || type == "varchar" || type == "char" || type == "enum") {
    return value;
  }
  if (type.starts_with("int") || type.starts_with("uint") || type.starts_with("long") || type.starts_with("short") ||
      type.starts_with("unsigned")) {
    const std::string digits(number.starts_with('+') ? number.substr(1) : number);
    const size_t first = digits.starts_with('-') ? 1 : 0;
    if (digits.size() > first && digits.find_first_not_of("0123456789", first) == std::string::npos &&
        digits.size() < 19) {
      return std::stoll(digits);
    }
    return value;
  }
  if (type.starts_with("num") || type.starts_with("float")) {
    const std::string text(number);
    char* end = nullptr;
    const double parsed = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(parsed)) return value;
    if (parsed == std::floor(parsed) && std::fabs(parsed) < 9.2e18) return static_cast<int64_t>(parsed);
    return parsed;
  }
  if (type == "boolean" || type == "bool" || type == "binary") return lower(value) == "true";
  // object, array and the rest: JSON where it parses (vLLM also tries Python literals), else the text.
  const OrderedJson parsed = OrderedJson::parse(value, nullptr, false);
  return parsed.is_discarded() ? OrderedJson(value) : parsed;
}

// qwen3_coder: each <function=NAME>...</function> of the <tool_call> blocks in `calls`.
bool qwen3_coder_calls(std::string_view calls, const OrderedJson& tools, std::vector<ToolCall>& out) {
  for (size_t at = calls.find(kFunction); at != std::string_view::npos; at = calls.find(kFunction, at)) {
    at += kFunction.size();
    const size_t close = calls.find(kFunctionEnd, at);
    const std::string_view function = calls.substr(at, close == std::string_view::npos ? std::string_view::npos : close - at);
    at = close == std::string_view::npos ? calls.size() : close + kFunctionEnd.size();
    const size_t name_end = function.find('>');
    if (name_end == std::string_view::npos || name_end == 0) return false;
    ToolCall call{.name = std::string(function.substr(0, name_end))};
    const OrderedJson properties = tool_properties(tools, call.name);
    OrderedJson arguments = OrderedJson::object();
    const std::string_view parameters = function.substr(name_end + 1);
    for (size_t p = parameters.find(kParameter); p != std::string_view::npos;) {
      p += kParameter.size();
      // The value ends at </parameter>, the next <parameter=, or the end of the function.
      size_t end = std::min(parameters.find(kParameterEnd, p), parameters.find(kParameter, p));
      const std::string_view body = parameters.substr(p, end == std::string_view::npos ? std::string_view::npos : end - p);
      const size_t key_end = body.find('>');
      if (key_end == std::string_view::npos) return false;
      std::string_view value = body.substr(key_end + 1);
      if (value.starts_with('\n')) value.remove_prefix(1);
      if (value.ends_with('\n')) value.remove_suffix(1);
      const std::string key(body.substr(0, key_end));
      arguments[key] = typed_value(std::string(value), key, properties);
      p = end == std::string_view::npos ? end : parameters.find(kParameter, end);
    }
    auto text = chat::to_json_text(chat::Value::from_json(arguments), chat::JsonDumpOptions{});
    if (!text.ok()) return false;
    call.arguments = *text;
    out.push_back(std::move(call));
  }
  return !out.empty();
}

// deepseek_v3 / deepseek_v31: each <｜tool▁call▁begin｜> ... <｜tool▁call▁end｜> of `calls`.
bool deepseek_calls(std::string_view calls, bool v31, std::vector<ToolCall>& out) {
  for (size_t at = calls.find(kCallBegin); at != std::string_view::npos; at = calls.find(kCallBegin, at)) {
    at += kCallBegin.size();
    const size_t end = calls.find(kCallEnd, at);
    if (end == std::string_view::npos) return false;
    const std::string_view body = calls.substr(at, end - at);
    at = end + kCallEnd.size();
    const size_t sep = body.find(kSep);
    if (sep == std::string_view::npos) return false;
    std::string_view head = body.substr(0, sep), rest = body.substr(sep + kSep.size());
    ToolCall call;
    if (v31) {
      call.name = std::string(trim(head));
      call.arguments = std::string(trim(rest));
    } else {
      // function<｜tool▁sep｜>NAME\n```json\nARGS\n```
      const size_t newline = rest.find('\n');
      const size_t fence = rest.find("```json");
      const size_t close = rest.rfind("```");
      if (trim(head) != "function" || newline == std::string_view::npos || fence == std::string_view::npos ||
          close == std::string_view::npos || close <= fence) {
        return false;
      }
      call.name = std::string(trim(rest.substr(0, newline)));
      call.arguments = std::string(trim(rest.substr(fence + 7, close - fence - 7)));
    }
    if (call.name.empty()) return false;
    out.push_back(std::move(call));
  }
  return !out.empty();
}

// deepseek_v32: each <｜DSML｜invoke name="NAME"> ... </｜DSML｜invoke> of `calls`, its parameters
// written back as a JSON object in their order.
bool dsml_calls(std::string_view calls, std::vector<ToolCall>& out) {
  const auto json_string = [](std::string_view text) {
    return nlohmann::ordered_json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  for (size_t at = calls.find(kDsmlInvoke); at != std::string_view::npos; at = calls.find(kDsmlInvoke, at)) {
    at += kDsmlInvoke.size();
    const size_t end = calls.find(kDsmlInvokeEnd, at);
    const size_t name_end = calls.find("\">", at);
    if (end == std::string_view::npos || name_end == std::string_view::npos || name_end > end) return false;
    ToolCall call{.name = std::string(calls.substr(at, name_end - at)), .arguments = "{"};
    const std::string_view body = calls.substr(name_end + 2, end - name_end - 2);
    at = end + kDsmlInvokeEnd.size();
    size_t count = 0;
    for (size_t p = body.find(kDsmlParameter); p != std::string_view::npos; p = body.find(kDsmlParameter, p)) {
      p += kDsmlParameter.size();
      const size_t key_end = body.find("\" string=\"", p);
      const size_t value_end = body.find(kDsmlParameterEnd, p);
      if (key_end == std::string_view::npos || value_end == std::string_view::npos || key_end > value_end) return false;
      const std::string_view key = body.substr(p, key_end - p);
      const std::string_view rest = body.substr(key_end + 10, value_end - key_end - 10);  // after ` string="`
      const bool is_string = rest.starts_with("true\">");
      if (!is_string && !rest.starts_with("false\">")) return false;
      const std::string_view value = rest.substr(is_string ? 6 : 7);
      if (count++ > 0) call.arguments += ", ";
      call.arguments += json_string(key) + ": " + (is_string ? json_string(value) : std::string(value));
      p = value_end + kDsmlParameterEnd.size();
    }
    call.arguments += "}";
    if (call.name.empty()) return false;
    out.push_back(std::move(call));
  }
  return !out.empty();
}

// kimi_k2: each <|tool_call_begin|> ID <|tool_call_argument_begin|> ARGS <|tool_call_end|> of
// `calls`, ID being NAME:N or functions.NAME:N.
bool kimi_calls(std::string_view calls, std::vector<ToolCall>& out) {
  for (size_t at = calls.find(kKimiCall); at != std::string_view::npos; at = calls.find(kKimiCall, at)) {
    at += kKimiCall.size();
    const size_t arguments = calls.find(kKimiArguments, at);
    const size_t end = calls.find(kKimiCallEnd, at);
    if (arguments == std::string_view::npos || end == std::string_view::npos || arguments > end) return false;
    const std::string_view id = trim(calls.substr(at, arguments - at));
    const size_t colon = id.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == id.size() ||
        id.substr(colon + 1).find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    const std::string_view qualified = id.substr(0, colon);
    const size_t dot = qualified.rfind('.');
    ToolCall call{.name = std::string(dot == std::string_view::npos ? qualified : qualified.substr(dot + 1)),
                  .arguments = std::string(trim(calls.substr(arguments + kKimiArguments.size(),
                                                             end - arguments - kKimiArguments.size()))),
                  .id = std::string(id)};
    if (call.name.empty()) return false;
    out.push_back(std::move(call));
    at = end + kKimiCallEnd.size();
  }
  return !out.empty();
}

// Where the calls of `answer` begin for a whole-answer parser, npos when it begins otherwise;
// `undecided` while what has come could still begin either way. llama3_json: the first non-space
// character, '{' or <|python_tag|>; pythonic: the first character, '['; llama4_pythonic: that, or
// <|python_start|>.
constexpr size_t kUndecided = std::string_view::npos - 1;
size_t calls_start(ToolCallParser parser, std::string_view answer) {
  const size_t first = parser == ToolCallParser::kLlamaJson ? answer.find_first_not_of(" \t\r\n") : 0;
  if (first >= answer.size()) return kUndecided;
  const std::string_view rest = answer.substr(first);
  const std::string_view tag = parser == ToolCallParser::kLlamaJson        ? kPythonTag
                               : parser == ToolCallParser::kLlama4Pythonic ? kPythonStart
                                                                           : std::string_view();
  if (rest.front() == (parser == ToolCallParser::kLlamaJson ? '{' : '[')) return first;
  if (!tag.empty() && rest.starts_with(tag)) return first;
  if (!tag.empty() && rest.size() < tag.size() && tag.starts_with(rest)) return kUndecided;
  return std::string_view::npos;
}

// The length of the JSON object at the start of `text` (braces counted outside strings), 0 when
// it does not close.
size_t json_object_length(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t at = 0; at < text.size(); ++at) {
    const char c = text[at];
    if (in_string) {
      if (c == '\\') ++at;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return at + 1;
    }
  }
  return 0;
}

// llama3_json: `calls` (from the answer's first call) as {"name", "parameters"|"arguments"}
// objects separated by ';'; false when anything else is there.
bool llama_json_calls(std::string_view calls, std::vector<ToolCall>& out) {
  calls = trim(calls);
  if (calls.starts_with(kPythonTag)) calls = trim(calls.substr(kPythonTag.size()));
  while (!calls.empty()) {
    const size_t length = calls.front() == '{' ? json_object_length(calls) : 0;
    if (length == 0) return false;
    const nlohmann::ordered_json call = nlohmann::ordered_json::parse(calls.substr(0, length), nullptr, false);
    if (call.is_discarded() || !call.contains("name") || !call["name"].is_string()) return false;
    const auto arguments = call.contains("arguments") ? call.find("arguments") : call.find("parameters");
    if (arguments == call.end()) return false;
    chat::JsonDumpOptions ascii;
    ascii.ensure_ascii = true;  // json.dumps' default, as vLLM's llama3_json writes arguments
    auto text = chat::to_json_text(chat::Value::from_json(*arguments), ascii);
    if (!text.ok()) return false;
    out.push_back(ToolCall{.name = call["name"].get<std::string>(), .arguments = *text, .id = ""});
    calls = trim(calls.substr(length));
    if (calls.starts_with(';')) calls = trim(calls.substr(1));
    else if (!calls.empty()) return false;
  }
  return !out.empty();
}

}  // namespace

bool whole_answer(ToolCallParser parser) {
  return parser == ToolCallParser::kLlamaJson || parser == ToolCallParser::kPythonic ||
         parser == ToolCallParser::kLlama4Pythonic;
}

Result<ToolCallParser> parse_tool_call_parser(const std::string& name) {
  if (name == "hermes") return ToolCallParser::kHermes;
  if (name == "qwen3_coder") return ToolCallParser::kQwen3Coder;
  if (name == "deepseek_v3") return ToolCallParser::kDeepseekV3;
  if (name == "deepseek_v31") return ToolCallParser::kDeepseekV31;
  if (name == "deepseek_v32") return ToolCallParser::kDeepseekV32;
  if (name == "kimi_k2") return ToolCallParser::kKimiK2;
  if (name == "llama3_json" || name == "llama4_json") return ToolCallParser::kLlamaJson;
  if (name == "pythonic") return ToolCallParser::kPythonic;
  if (name == "llama4_pythonic") return ToolCallParser::kLlama4Pythonic;
  if (name == "openai") return ToolCallParser::kOpenAi;
  return make_error(
      "'{}' is not supported (supported: hermes, qwen3_coder, deepseek_v3, deepseek_v31, deepseek_v32, kimi_k2, "
      "llama3_json, llama4_json, pythonic, llama4_pythonic, openai)",
      name);
}

ToolCallSplit split_tool_calls(ToolCallParser parser, std::string_view answer, const nlohmann::ordered_json& tools) {
  if (parser == ToolCallParser::kNone || parser == ToolCallParser::kOpenAi) return ToolCallSplit{std::string(answer), {}};
  if (whole_answer(parser)) {
    const size_t start = calls_start(parser, answer);
    ToolCallSplit split;
    if (start >= kUndecided) return ToolCallSplit{std::string(answer), {}};
    std::string_view calls = answer.substr(start);
    std::string unwrapped;  // llama4_pythonic: <|python_start|> first, every <|python_end|> dropped
    if (parser == ToolCallParser::kLlama4Pythonic && calls.starts_with(kPythonStart)) {
      calls.remove_prefix(kPythonStart.size());
      for (size_t at = 0; at < calls.size();) {
        const size_t end = calls.find(kPythonEnd, at);
        unwrapped += calls.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
        at = end == std::string_view::npos ? calls.size() : end + kPythonEnd.size();
      }
      calls = unwrapped;
    }
    const bool parsed =
        parser == ToolCallParser::kLlamaJson
            ? llama_json_calls(calls, split.calls)
            : pythonic_calls(calls, /*ensure_ascii=*/parser == ToolCallParser::kLlama4Pythonic, split.calls);
    if (!parsed) return ToolCallSplit{std::string(answer), {}};
    return split;  // no content beside the calls, as vLLM's
  }
  const size_t start = answer.find(start_marker(parser));
  if (start == std::string_view::npos) return ToolCallSplit{std::string(answer), {}};
  ToolCallSplit split{std::string(answer.substr(0, start)), {}};
  const std::string_view calls = answer.substr(start);
  const bool parsed = parser == ToolCallParser::kHermes        ? hermes_calls(calls, split.calls)
                      : parser == ToolCallParser::kQwen3Coder  ? qwen3_coder_calls(calls, tools, split.calls)
                      : parser == ToolCallParser::kDeepseekV32 ? dsml_calls(calls, split.calls)
                      : parser == ToolCallParser::kKimiK2      ? kimi_calls(calls, split.calls)
                                                               : deepseek_calls(calls, parser == ToolCallParser::kDeepseekV31,
                                                                                split.calls);
  if (!parsed) return ToolCallSplit{std::string(answer), {}};
  return split;
}

std::string ToolCallStream::push(std::string_view text, bool last) {
  held_ += text;
  std::string content;
  if (whole_answer(parser_) && !in_calls_ && !plain_) {
    // The answer's beginning decides: a call holds everything to the end, anything else passes.
    const size_t start = calls_start(parser_, held_);
    if (start == kUndecided && !last) return content;
    if (start >= kUndecided) {
      plain_ = true;
    } else {
      in_calls_ = true;
    }
  }
  if (plain_) {
    content.swap(held_);
    return content;
  }
  if (!in_calls_) {
    const std::string_view marker = start_marker(parser_);
    const bool none = parser_ == ToolCallParser::kNone || parser_ == ToolCallParser::kOpenAi;
    const size_t start = none ? std::string::npos : held_.find(marker);
    if (start != std::string::npos) {
      content = held_.substr(0, start);
      held_.erase(0, start);
      in_calls_ = true;
    } else {
      const size_t keep = last || none ? 0 : partial_marker_suffix(held_, marker);
      content = held_.substr(0, held_.size() - keep);
      held_.erase(0, held_.size() - keep);
    }
  }
  if (last && in_calls_) {
    ToolCallSplit split = split_tool_calls(parser_, held_, tools_);
    content += split.content;  // the held markup itself when it did not parse
    calls_ = std::move(split.calls);
    held_.clear();
  }
  return content;
}

}  // namespace moeserve
