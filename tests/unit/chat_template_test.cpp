// Chat-template engine tests. Ground truth: (1) tokenizer_reference.json's
// `chat` cases, rendered by transformers' apply_chat_template with each
// tokenizer's own template; (2) chat/chat_template_reference.json, rendered by
// jinja2 configured as transformers configures it
// (scripts/gen_chat_template_reference.py): the Qwen3, DeepSeek-V3, Mixtral,
// Llama-3, Llama-3.1, GPT-OSS (harmony) and Llama 4 templates on tool/thinking
// conversations plus interpreter snippets. Every text must match exactly, every
// rendering's token ids too (tokenizer_reference.json; for GPT-OSS, ids from
// transformers.js; for Llama 4, from tiktoken on Meta's BPE file), and every
// refused case must be refused.
// Then interpreter properties the references cannot show: error positions,
// runaway protection, no crash on junk input.
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tokenizer/chat/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "unit/llama4_tokenizer.h"

namespace moeserve::chat {
namespace {

const std::filesystem::path kFixtures = MOESERVE_TEST_DATA_DIR;
const std::filesystem::path kRepoRoot = kFixtures.parent_path().parent_path();

std::string read_file(const std::filesystem::path &path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

nlohmann::ordered_json read_json(const std::filesystem::path &path) {
  return nlohmann::ordered_json::parse(read_file(path));
}

Result<std::string> render_source(const std::string &source,
                                  const nlohmann::ordered_json &messages,
                                  const RenderOptions &options = {}) {
  MS_ASSIGN_OR_RETURN(ChatTemplate chat_template, ChatTemplate::parse(source));
  return chat_template.render(messages, options);
}

std::string render_ok(
    const std::string &source,
    const nlohmann::ordered_json &extra = nlohmann::ordered_json::object()) {
  RenderOptions options;
  options.extra_context = extra;
  auto result = render_source(source, nlohmann::ordered_json::array(), options);
  EXPECT_TRUE(result.ok()) << source << "\n"
                           << (result.ok() ? "" : result.error().message);
  return result.ok() ? *result : "<error>";
}

std::string render_error(const std::string &source,
                         const RenderOptions &options = {}) {
  auto result = render_source(source, nlohmann::ordered_json::array(), options);
  EXPECT_FALSE(result.ok())
      << source << " rendered " << (result.ok() ? *result : "");
  return result.ok() ? "" : result.error().message;
}

TEST(ChatTemplateFixtures, TransformersRenderingsOfEachTokenizersTemplate) {
  auto reference = read_json(kFixtures / "tokenizer_reference.json");
  int checked = 0;
  int refused = 0;
  for (const auto &[name, entry] : reference.items()) {
    if (!entry.contains("chat") || entry["chat"].empty())
      continue;
    std::string dir = entry["tokenizer_dir"].get<std::string>();
    std::filesystem::path model_dir =
        dir.rfind("models/", 0) == 0 ? kRepoRoot / dir : kFixtures / dir;
    auto config = load_chat_template_config(model_dir);
    ASSERT_TRUE(config.ok()) << name << ": " << config.error().message;
    auto chat_template = ChatTemplate::parse(config->chat_template);
    ASSERT_TRUE(chat_template.ok())
        << name << ": " << chat_template.error().message;
    auto tokenizer = Tokenizer::from_dir(model_dir.string());
    ASSERT_TRUE(tokenizer.ok()) << name << ": " << tokenizer.error().message;
    for (const auto &chat_case : entry["chat"]) {
      const auto &conversation = chat_case["conversation"];
      RenderOptions options;
      options.bos_token = config->bos_token;
      options.eos_token = config->eos_token;
      options.add_generation_prompt =
          conversation.value("add_generation_prompt", false);
      for (const auto &[key, value] : conversation.items()) {
        if (key != "messages" && key != "add_generation_prompt")
          options.extra_context[key] = value;
      }
      auto rendered = chat_template->render(conversation["messages"], options);
      if (chat_case.contains("error")) {
        EXPECT_FALSE(rendered.ok())
            << name << ": expected refusal " << chat_case["error"];
        if (!rendered.ok()) {
          EXPECT_NE(rendered.error().message.find(
                        "Conversation roles must alternate"),
                    std::string::npos)
              << rendered.error().message;
        }
        ++refused;
        continue;
      }
      ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.error().message;
      EXPECT_EQ(*rendered, chat_case["rendered"].get<std::string>())
          << name << " " << conversation.dump();
      // apply_chat_template(tokenize=True): the rendered prompt encoded without
      // added special tokens (the template writes BOS itself where the model
      // wants one).
      auto ids = (*tokenizer)->encode(*rendered, /*add_special_tokens=*/false);
      ASSERT_TRUE(ids.ok()) << name << ": " << ids.error().message;
      EXPECT_EQ(*ids, chat_case["ids"].get<std::vector<int32_t>>())
          << name << " " << conversation.dump();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 11);
  EXPECT_EQ(refused, 1);
}

std::string load_template_spec(const std::string &spec) {
  if (spec.rfind("@config:", 0) == 0) {
    return read_json(kRepoRoot / spec.substr(8))["chat_template"]
        .get<std::string>();
  }
  if (spec.rfind("@", 0) == 0)
    return read_file(kRepoRoot / spec.substr(1));
  return spec;
}

// A case's "now" ("YYYY-MM-DDTHH:MM:SS", the clock the generator pinned for
// strftime_now) as the broken-down time RenderOptions::now takes.
std::tm parse_now(const std::string &text) {
  std::tm parts{};
  EXPECT_EQ(sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &parts.tm_year,
                   &parts.tm_mon, &parts.tm_mday, &parts.tm_hour,
                   &parts.tm_min, &parts.tm_sec),
            6)
      << text;
  parts.tm_year -= 1900;
  parts.tm_mon -= 1;
  std::time_t seconds = timegm(&parts); // fills in the weekday and yday
  std::tm normalised{};
  gmtime_r(&seconds, &normalised);
  return normalised;
}

// The render context a reference case names: add_generation_prompt, special
// tokens, extra variables and the pinned clock.
RenderOptions options_of(const nlohmann::ordered_json &context) {
  RenderOptions options;
  options.add_generation_prompt = context.value("add_generation_prompt", false);
  options.bos_token = context.value("bos_token", "");
  options.eos_token = context.value("eos_token", "");
  if (context.contains("extra"))
    options.extra_context = context["extra"];
  if (context.contains("now"))
    options.now = parse_now(context["now"].get<std::string>());
  return options;
}

TEST(ChatTemplateFixtures, Jinja2ReferenceCases) {
  auto reference =
      read_json(kFixtures / "chat" / "chat_template_reference.json");
  int rendered_cases = 0;
  int error_cases = 0;
  int tokenized_cases = 0;
  std::map<std::string, int> per_family;
  std::map<std::string, std::shared_ptr<const Tokenizer>> tokenizers;
  for (const auto &chat_case : reference["cases"]) {
    std::string name = chat_case["name"].get<std::string>();
    const auto &context = chat_case["context"];
    RenderOptions options = options_of(context);
    ++per_family[name.substr(0, name.find('/'))];
    auto rendered = render_source(
        load_template_spec(chat_case["template"].get<std::string>()),
        context["messages"], options);
    if (chat_case.contains("error")) {
      EXPECT_FALSE(rendered.ok())
          << name << ": jinja2 raised " << chat_case["error"]
          << " but we rendered " << (rendered.ok() ? *rendered : "");
      ++error_cases;
      continue;
    }
    ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.error().message;
    EXPECT_EQ(*rendered, chat_case["rendered"].get<std::string>()) << name;
    ++rendered_cases;
    if (!chat_case.contains("ids"))
      continue;
    // apply_chat_template(tokenize=True): the rendering encoded without added
    // special tokens, the harmony markers (<|start|>, <|channel|>, ...) as
    // their special-token ids.
    std::string dir = chat_case["tokenizer"].get<std::string>();
    auto &tokenizer = tokenizers[dir];
    if (!tokenizer) {
      auto loaded = Tokenizer::from_dir(dir == "tokenizers/llama4" ? testing_llama4::llama4_tokenizer_dir()
                                                                   : (kFixtures / dir).string());
      ASSERT_TRUE(loaded.ok()) << dir << ": " << loaded.error().message
                               << " (run scripts/fetch-fixtures.sh)";
      tokenizer = *loaded;
    }
    auto ids = tokenizer->encode(*rendered, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.error().message;
    EXPECT_EQ(*ids, chat_case["ids"].get<std::vector<int32_t>>()) << name;
    ++tokenized_cases;
  }
  EXPECT_GT(rendered_cases, 80);
  EXPECT_GT(error_cases, 20);
  // GPT-OSS's harmony template: 25 renderings (plain, developer, reasoning
  // effort, function tools of every parameter kind, builtin tools, tool rounds,
  // the training form) and 8 refusals, every rendering tokenized.
  EXPECT_EQ(per_family["gpt_oss"], 33);
  // Llama 4's: 13 renderings (system as text and as parts, image and text
  // parts, tools in the user or the system message, custom_tools, tool rounds
  // with string and mapping results) and the refusal of tools with no user
  // message, every rendering tokenized.
  EXPECT_EQ(per_family["llama4"], 14);
  EXPECT_EQ(tokenized_cases, 25 + 13);
}

// A GPT-OSS checkpoint ships its template as chat_template.jinja beside a
// tokenizer_config.json that has none (the hub layout of openai/gpt-oss-20b):
// the server's loader and the tokenizer both pick it up, with <|startoftext|> /
// <|return|> as BOS / EOS, and it renders the jinja2 reference.
TEST(ChatTemplateFixtures, GptOssCheckpointLayoutPicksTheHarmonyTemplate) {
  auto dir = std::filesystem::temp_directory_path() /
             ("moeserve_gpt_oss_layout_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto gptoss = kFixtures / "tokenizers" / "gptoss";
  std::filesystem::copy_file(gptoss / "tokenizer_config.json",
                             dir / "tokenizer_config.json");
  std::filesystem::create_symlink(gptoss / "tokenizer.json",
                                  dir / "tokenizer.json");
  std::filesystem::copy_file(kFixtures / "chat" / "openai_gpt_oss.jinja",
                             dir / "chat_template.jinja");
  auto config = load_chat_template_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->chat_template,
            read_file(kFixtures / "chat" / "openai_gpt_oss.jinja"));
  EXPECT_EQ(config->bos_token, "<|startoftext|>");
  EXPECT_EQ(config->eos_token, "<|return|>");
  auto tokenizer = Tokenizer::from_dir(dir.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  ASSERT_TRUE((*tokenizer)->chat_template().has_value());
  EXPECT_EQ(*(*tokenizer)->chat_template(), config->chat_template);
  // The stop ids of the published generation_config.json (server_protocol_test
  // reads them): <|return|> ends a turn, <|call|> a tool call.
  EXPECT_EQ((*tokenizer)->token_to_id("<|return|>"), 200002);
  EXPECT_EQ((*tokenizer)->token_to_id("<|endoftext|>"), 199999);
  EXPECT_EQ((*tokenizer)->token_to_id("<|call|>"), 200012);

  auto reference =
      read_json(kFixtures / "chat" / "chat_template_reference.json");
  int checked = 0;
  for (const auto &chat_case : reference["cases"]) {
    if (chat_case["name"] != "gpt_oss/tool_round_done")
      continue;
    RenderOptions options = options_of(chat_case["context"]);
    options.bos_token = config->bos_token;
    options.eos_token = config->eos_token;
    auto rendered = render_source(config->chat_template,
                                  chat_case["context"]["messages"], options);
    ASSERT_TRUE(rendered.ok()) << rendered.error().message;
    EXPECT_EQ(*rendered, chat_case["rendered"].get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, 1);
  std::filesystem::remove_all(dir);
}

TEST(ChatTemplateFixtures, RaisedMessagesReachTheCaller) {
  auto reference =
      read_json(kFixtures / "chat" / "chat_template_reference.json");
  for (const auto &chat_case : reference["cases"]) {
    std::string error = chat_case.value("error", "");
    if (error.rfind("TemplateError: ", 0) != 0)
      continue;
    const auto &context = chat_case["context"];
    auto rendered = render_source(
        load_template_spec(chat_case["template"].get<std::string>()),
        context["messages"], options_of(context));
    ASSERT_FALSE(rendered.ok());
    EXPECT_NE(rendered.error().message.find(error.substr(15)),
              std::string::npos)
        << rendered.error().message;
  }
}

TEST(ChatTemplateInterpreter, WhitespaceControl) {
  EXPECT_EQ(render_ok("{% if true %}\n  x\n{% endif %}\ny"), "  x\ny");
  EXPECT_EQ(render_ok("a\n  {% if true %}\nb\n  {% endif %}\nc"), "a\nb\nc");
  EXPECT_EQ(render_ok("a \n {%- if true -%} \n b \n {%- endif %}"), "ab");
  EXPECT_EQ(render_ok("a\n  {{ 'v' }}\n"), "a\n  v");
  EXPECT_EQ(render_ok("  {%+ if true %}x{% endif %}"), "  x");
}

TEST(ChatTemplateInterpreter, LoopsMacrosAndNamespaces) {
  EXPECT_EQ(render_ok("{% for x in 'abc' %}{{ loop.index }}{{ x }}{% if "
                      "loop.last %}.{% endif %}{% endfor %}"),
            "1a2b3c.");
  EXPECT_EQ(render_ok("{% for x in [3, 4, 5, 6] if x is odd %}{{ x }}/{{ "
                      "loop.length }} {% else %}none{% endfor %}"),
            "3/2 5/2 ");
  EXPECT_EQ(render_ok("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% "
                      "if i == 3 %}{% break %}{% endif %}"
                      "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(render_ok("{% macro f(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ "
                      "f(1) }}{{ f(b=2, a=3) }}"),
            "[1B][32]");
  EXPECT_EQ(render_ok("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call "
                      "w() %}in{% endcall %}"),
            "<in>");
}

TEST(ChatTemplateInterpreter, ExpressionsAndFilters) {
  EXPECT_EQ(render_ok("{{ [1, 2, 3][::-1] }} {{ 'abc'[1:] }} {{ 'x' ~ 1 }} {{ "
                      "7 // 2 }} {{ 7 / 2 }}"),
            "[3, 2, 1] bc x1 3 3.5");
  EXPECT_EQ(
      render_ok("{{ tools | tojson }}", {{"tools", {{{"b", 1}, {"a", "é"}}}}}),
      "[{\"b\": 1, \"a\": \"é\"}]");
  EXPECT_EQ(render_ok("{{ x.strip().split(',') | map('upper') | join('+') }}",
                      {{"x", " a,b "}}),
            "A+B");
  EXPECT_EQ(render_ok("{{ none }} {{ true }} {{ undefined_name }}|{{ 'a' if "
                      "undefined_name is not defined }}"),
            "None True |a");
}

TEST(ChatTemplateErrors, SyntaxErrorsNameLineAndColumn) {
  auto result =
      ChatTemplate::parse("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("line 3, column 10"), std::string::npos)
      << result.error().message;
  result = ChatTemplate::parse("{% for x in y %}\n{% endif %}");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("line 2"), std::string::npos)
      << result.error().message;
  EXPECT_NE(result.error().message.find("endfor"), std::string::npos)
      << result.error().message;
}

TEST(ChatTemplateErrors, RuntimeErrorsNameTheLine) {
  std::string message = render_error("ok\n{{ 'a' }}\n{{ missing.attribute }}");
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_NE(message.find("'missing' is undefined"), std::string::npos)
      << message;
  message = render_error("{{ raise_exception('no system messages') }}");
  EXPECT_EQ(message, "chat template error: no system messages");
}

TEST(ChatTemplateErrors, RunawayTemplatesStop) {
  // Huge loops, unbounded recursion, exponential strings and output are all
  // refused.
  EXPECT_NE(render_error("{% for i in range(100000) %}{% for j in "
                         "range(100000) %}{% endfor %}{% endfor %}")
                .find("loop iterations"),
            std::string::npos);
  EXPECT_NE(
      render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
          .find("nested deeper"),
      std::string::npos);
  EXPECT_NE(render_error("{% set ns = namespace(s='ab') %}{% for i in "
                         "range(64) %}{% set ns.s = ns.s + ns.s %}"
                         "{% endfor %}")
                .find("size limit"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 'x' * 100000000000 }}").find("size limit"),
            std::string::npos);
  EXPECT_NE(
      render_error("{{ range(10000000000) | length }}").find("loop limit"),
      std::string::npos);
  RenderOptions small;
  small.limits.max_output_bytes = 1000;
  EXPECT_NE(
      render_error("{% for i in range(1000) %}0123456789{% endfor %}", small)
          .find("output exceeds"),
      std::string::npos);
  std::string deep_expression =
      std::string(5000, '(') + "1" + std::string(5000, ')');
  EXPECT_FALSE(ChatTemplate::parse("{{ " + deep_expression + " }}").ok());
  std::string deep_blocks;
  for (int i = 0; i < 5000; ++i)
    deep_blocks += "{% if true %}";
  EXPECT_FALSE(ChatTemplate::parse(deep_blocks).ok());
}

TEST(ChatTemplateErrors, ArbitraryBytesNeverCrash) {
  // Seeded fuzz: random bytes and random template-token soup must parse or fail
  // cleanly, and whatever parses must render or fail cleanly.
  std::mt19937 rng(1234);
  const std::vector<std::string> pieces = {
      "{%",      "%}",    "{{",       "}}", "{#",     "#}",     "-",
      "+",       "if",    "for",      "in", "endif",  "endfor", "set",
      "x",       "=",     "'s'",      "\"", "(",      ")",      "[",
      "]",       "{",     "}",        "|",  "length", "is",     "not",
      "defined", "macro", "endmacro", ":",  ",",      "1",      "messages",
      ".",       "loop",  "else",     "\n", " ",      "\xff",   "\xc3",
      "~",       "*"};
  nlohmann::ordered_json messages =
      nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
  for (int trial = 0; trial < 3000; ++trial) {
    std::string source;
    int length = static_cast<int>(rng() % 40);
    for (int i = 0; i < length; ++i) {
      if (trial % 2 == 0) {
        source.push_back(static_cast<char>(rng() % 256));
      } else {
        source += pieces[rng() % pieces.size()];
      }
    }
    auto parsed = ChatTemplate::parse(source);
    if (parsed.ok())
      (void)parsed->render(messages, RenderOptions{});
  }
}

TEST(ChatTemplateConfig, ReadsNamedTemplatesAndTokenObjects) {
  auto dir = std::filesystem::temp_directory_path() /
             ("moeserve_chat_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json") << R"({
    "bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>",
    "chat_template": [{"name": "default", "template": "{{ bos_token }}D"},
                      {"name": "tool_use", "template": "T{{ eos_token }}"}]})";
  auto config = load_chat_template_config(dir);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->bos_token, "<B>");
  EXPECT_EQ(config->eos_token, "<E>");
  EXPECT_EQ(config->chat_template, "{{ bos_token }}D");
  auto tool_use = load_chat_template_config(dir, "tool_use");
  ASSERT_TRUE(tool_use.ok());
  EXPECT_EQ(tool_use->chat_template, "T{{ eos_token }}");
  auto missing = load_chat_template_config(dir, "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("default, tool_use"),
            std::string::npos)
      << missing.error().message;
  std::ofstream(dir / "chat_template.jinja") << "from file";
  EXPECT_EQ(load_chat_template_config(dir)->chat_template, "from file");
  std::filesystem::remove_all(dir);
}

} // namespace
} // namespace moeserve::chat
