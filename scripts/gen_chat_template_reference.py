#!/usr/bin/env python3
"""Writes tests/fixtures/chat/chat_template_reference.json: templates rendered by jinja2
configured exactly as Hugging Face transformers configures it for apply_chat_template
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, transformers'
tojson / raise_exception / strftime_now; tools=None and documents=None unless given).

Needs only python3-jinja2 (Debian). Run from the repository root:
    python3 scripts/gen_chat_template_reference.py
Each case: name, template (text, or "@path" of a template file / "@config:path" of a
tokenizer_config.json), context (messages, add_generation_prompt, bos_token, eos_token, extra)
and either `rendered` or `error` (jinja2's exception type and message).
"""
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now_at(now):
    """transformers' strftime_now, reading the clock `now` (None: the real clock)."""
    def strftime_now(fmt):
        return (now or datetime.now()).strftime(fmt)
    return strftime_now


def load_template(spec):
    if spec.startswith("@config:"):
        with open(os.path.join(ROOT, spec[len("@config:"):]), encoding="utf-8") as f:
            return json.load(f)["chat_template"]
    if spec.startswith("@"):
        with open(os.path.join(ROOT, spec[1:]), encoding="utf-8") as f:
            return f.read()
    return spec


def render(template, context):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    # A case may pin the clock ("now": ISO date-time) so that templates printing the date
    # (GPT-OSS: "Current date: ...") have a fixed rendering; the test pins ours the same way.
    now = datetime.fromisoformat(context["now"]) if "now" in context else None
    env.globals["strftime_now"] = strftime_now_at(now)
    compiled = env.from_string(template)
    variables = {"tools": None, "documents": None}
    if context.get("bos_token"):
        variables["bos_token"] = context["bos_token"]
    if context.get("eos_token"):
        variables["eos_token"] = context["eos_token"]
    variables.update(context.get("extra", {}))
    variables["messages"] = context["messages"]
    variables["add_generation_prompt"] = context.get("add_generation_prompt", False)
    return compiled.render(**variables)


QWEN3 = "@config:tests/fixtures/tokenizers/qwen3/tokenizer_config.json"
DEEPSEEK = "@config:tests/fixtures/tokenizers/deepseek_v3/tokenizer_config.json"
MIXTRAL = "@config:models/kjv-mixtral-tiny/tokenizer_config.json"
LLAMA3 = "@tests/fixtures/chat/llama3_instruct_lenml_llama3.jinja"
LLAMA3_GEN = "@tests/fixtures/chat/llama3_instruct_lenml_llama3_1.jinja"
LLAMA31 = "@tests/fixtures/chat/llama3_1_instruct_tools.jinja"
GPT_OSS = "@tests/fixtures/chat/openai_gpt_oss.jinja"
LLAMA4 = "@config:tests/fixtures/tokenizers/llama4/tokenizer_config.json"

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city — «quoted» \"text\"",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
CLOCK_TOOL = {"type": "function", "function": {"name": "now", "description": "Current time", "parameters": {}}}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def real_template_cases():
    cases = []
    tool_turns = [
        user("Weather in Paris and Zürich?"),
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 18}"},
        {"role": "tool", "content": "{\"temp\": 11}"},
        assistant("Paris 18°C, Zürich 11°C."),
    ]
    qwen = [
        ("tools_system_and_calls", {"messages": [{"role": "system", "content": "Be brief."}] + tool_turns,
                                    "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL, CLOCK_TOOL]}}),
        ("tools_no_system", {"messages": [user("What time is it?")], "add_generation_prompt": True,
                             "extra": {"tools": [CLOCK_TOOL]}}),
        ("multi_step_tool_last", {"messages": tool_turns[:4], "add_generation_prompt": True,
                                  "extra": {"tools": [WEATHER_TOOL]}}),
        ("reasoning_in_content", {"messages": [user("2+2?"), assistant("<think>\nadd them\n</think>\n\n4"),
                                               user("and 3+3?"), assistant("<think>easy</think>6")]}),
        ("reasoning_content_field", {"messages": [user("hi"), {"role": "assistant", "content": "hello",
                                                               "reasoning_content": "greet back"}],
                                     "add_generation_prompt": False}),
        ("old_turn_reasoning_dropped", {"messages": [user("a"), assistant("<think>x</think>b"), user("c")],
                                        "add_generation_prompt": True, "extra": {"enable_thinking": True}}),
        ("enable_thinking_false", {"messages": [user("a")], "add_generation_prompt": True,
                                   "extra": {"enable_thinking": False}}),
        ("system_not_first", {"messages": [user("a"), {"role": "system", "content": "late system"}, user("b")],
                              "add_generation_prompt": True}),
        ("tool_response_user_message", {"messages": [user("<tool_response>x</tool_response>"), assistant("ok")]}),
        ("unicode_and_whitespace", {"messages": [user("  naïve 🙂 \n\t text  "), assistant("\n\nspaced\n")]}),
    ]
    for name, context in qwen:
        context.setdefault("eos_token", "<|im_end|>")
        cases.append({"name": "qwen3/" + name, "template": QWEN3, "context": context})
    ds_bos, ds_eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    deepseek = [
        ("tool_calls", {"messages": [{"role": "system", "content": "sys A"}, {"role": "system", "content": "sys B"},
                                     user("weather?"),
                                     {"role": "assistant", "content": None, "tool_calls": [
                                         {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                                         {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
                                     {"role": "tool", "content": "18"}, {"role": "tool", "content": "25"},
                                     assistant("Warm."), user("thanks")], "add_generation_prompt": True}),
        ("ends_with_tool", {"messages": [user("q"), {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "content": "r"}],
                            "add_generation_prompt": True}),
    ]
    for name, context in deepseek:
        context.update({"bos_token": ds_bos, "eos_token": ds_eos})
        cases.append({"name": "deepseek_v3/" + name, "template": DEEPSEEK, "context": context})
    mixtral = [
        ("long_conversation", [user("a"), assistant("b"), user("c"), assistant("d"), user("e")]),
        ("assistant_first", [assistant("b")]),
        ("tool_role", [user("a"), {"role": "tool", "content": "x"}]),
        ("two_users", [user("a"), user("b")]),
    ]
    for name, messages in mixtral:
        cases.append({"name": "mixtral/" + name, "template": MIXTRAL,
                      "context": {"messages": messages, "add_generation_prompt": True,
                                  "bos_token": "<s>", "eos_token": "</s>"}})
    conversation = [{"role": "system", "content": "  You are terse.\n"}, user(" Hi "), assistant("Hello."), user("Count")]
    for template, label, eos in ((LLAMA3, "llama3", "<|end_of_text|>"), (LLAMA3_GEN, "llama3_gen", "<|eot_id|>")):
        for add in (True, False):
            cases.append({"name": f"{label}/conversation_gen{int(add)}", "template": template,
                          "context": {"messages": conversation, "add_generation_prompt": add,
                                      "bos_token": "<|begin_of_text|>", "eos_token": eos}})
    llama31_tool_turns = [user("Weather in Paris?"),
                          {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                              "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                          {"role": "tool", "content": "18 degrees"}, {"role": "tool", "content": {"temp": 18}}]
    llama31 = [
        ("plain", {"messages": conversation, "add_generation_prompt": True}),
        ("tools_in_user_message", {"messages": [{"role": "system", "content": "sys"}] + llama31_tool_turns,
                                   "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}}),
        ("tools_in_system", {"messages": llama31_tool_turns, "add_generation_prompt": True,
                             "extra": {"tools": [WEATHER_TOOL], "tools_in_user_message": False,
                                       "date_string": "01 Jan 2025"}}),
        ("builtin_tools", {"messages": [user("search it"), {"role": "assistant", "tool_calls": [{"type": "function",
                           "function": {"name": "brave_search", "arguments": {"query": "moe"}}}]}],
                           "extra": {"builtin_tools": ["brave_search", "code_interpreter"]}}),
        ("tools_without_user_message", {"messages": [{"role": "system", "content": "s"}],
                                        "extra": {"tools": [CLOCK_TOOL]}}),
        ("two_tool_calls_refused", {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]}]}),
    ]
    for name, context in llama31:
        context.update({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
        cases.append({"name": "llama3_1/" + name, "template": LLAMA31, "context": context})
    return cases + gpt_oss_cases() + llama4_cases()


# A function tool whose parameters reach every branch of the GPT-OSS template's
# render_typescript_type macro: enums with defaults, nullable, arrays of scalars, of objects and
# without `items`, nested objects, type lists, oneOf, a parameter without a type.
FLIGHT_TOOL = {"type": "function", "function": {
    "name": "search_flights", "description": "Search flights between two airports",
    "parameters": {"type": "object", "properties": {
        "origin": {"type": "string", "description": "IATA code, e.g. \"CDG\""},
        "cabin": {"type": "string", "enum": ["economy", "premium", "business"], "default": "economy",
                  "description": "Cabin class"},
        "passengers": {"type": "integer", "default": 1},
        "max_price": {"type": "number", "description": "In euros"},
        "direct_only": {"type": "boolean", "default": False},
        "note": {"type": "string", "nullable": True},
        "dates": {"type": "array", "items": {"type": "string"}, "description": "ISO dates"},
        "seats": {"type": "array", "items": {"type": "integer"}, "nullable": True},
        "legs": {"type": "array", "items": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"}}, "required": ["from"]}},
        "tags": {"type": "array"},
        "filters": {"type": "object", "properties": {"airline": {"type": "string"}, "stops": {"type": "integer"},
                                                     "alliances": {"type": "array", "items": {"type": "string"}}},
                    "required": ["stops"]},
        "options": {"type": "object"},
        "flexible": {"type": ["string", "number"]},
        "single": {"type": ["boolean"]},
        "when": {"oneOf": [{"type": "string", "description": "a date"}, {"type": "integer", "default": 0}],
                 "default": "soon"},
        "payload": {"oneOf": [{"type": "object"}, {"type": "string"}]},
        "anything": {"description": "No type at all"},
    }, "required": ["origin", "dates"]}}}


def llama4_cases():
    """The chat template transformers' Llama 4 conversion writes into the instruct models'
    tokenizer_config.json (tools in the first user message by default, tool calls as JSON after
    <|python_start|>...<|python_end|>, tool results as ipython turns), with its special tokens."""
    weather_call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}
    string_call = {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}
    tool_round = [user("  Weather in Paris and Zürich?  "),
                  {"role": "assistant", "content": "", "tool_calls": [weather_call, string_call]},
                  {"role": "tool", "content": "{\"temp\": 18}"},
                  {"role": "ipython", "content": {"temp": 11, "sky": "clear"}},
                  assistant("Paris 18°C, Zürich 11°C.")]
    cases = [
        ("plain", {"messages": [user("Hi")], "add_generation_prompt": True}),
        ("system_multi_turn", {"messages": [{"role": "system", "content": "  You are terse.\n"}, user("Hi"),
                                            assistant("Hello."), user("  naïve 🙂 \n\t text  ")],
                               "add_generation_prompt": True}),
        ("system_as_parts", {"messages": [{"role": "system", "content": [{"type": "text", "text": " Be brief. "}]},
                                          user("2+2?"), assistant("4")], "add_generation_prompt": False}),
        ("image_and_text_parts", {"messages": [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": "What is this?"}, {"type": "text", "text": " And this?"}]}],
            "add_generation_prompt": True}),
        ("tools_in_user_message", {"messages": [user("  Weather in Paris?  ")], "add_generation_prompt": True,
                                   "extra": {"tools": [WEATHER_TOOL, CLOCK_TOOL]}}),
        ("tools_with_system", {"messages": [{"role": "system", "content": "Use tools."}, user("What time is it?")],
                               "add_generation_prompt": True, "extra": {"tools": [CLOCK_TOOL]}}),
        ("tools_in_system_message", {"messages": [{"role": "system", "content": "Use tools."}, user("Weather?")],
                                     "add_generation_prompt": True,
                                     "extra": {"tools": [WEATHER_TOOL], "tools_in_user_message": False}}),
        ("custom_tools", {"messages": [user("Now?")], "add_generation_prompt": True,
                          "extra": {"custom_tools": [CLOCK_TOOL]}}),
        ("tool_round", {"messages": tool_round, "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}}),
        ("tool_round_no_tools", {"messages": tool_round[:4], "add_generation_prompt": True}),
        ("tool_call_with_text", {"messages": [user("Weather?"), {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."}], "tool_calls": [weather_call]}], "add_generation_prompt": False}),
        # An assistant turn with an empty tool_calls list matches no branch: it is dropped.
        ("empty_tool_calls_dropped", {"messages": [user("a"), {"role": "assistant", "content": "b", "tool_calls": []},
                                                   user("c")], "add_generation_prompt": True}),
        ("no_generation_prompt", {"messages": [user("Hi"), assistant("Hello.")], "add_generation_prompt": False}),
        # Tools with no user message to carry them: the template raises.
        ("tools_without_user_message", {"messages": [{"role": "system", "content": "Use tools."}],
                                        "add_generation_prompt": True, "extra": {"tools": [CLOCK_TOOL]}}),
    ]
    out = []
    for name, context in cases:
        context.setdefault("bos_token", "<|begin_of_text|>")
        context.setdefault("eos_token", "<|eot|>")
        out.append({"name": "llama4/" + name, "template": LLAMA4, "context": context})
    return out


def gpt_oss_cases():
    """The harmony chat template of openai/gpt-oss-20b and -120b, rendered with the context
    transformers' apply_chat_template gives it (special tokens of the tokenizer, tools, and the
    template's own kwargs reasoning_effort / model_identity / builtin_tools), clock pinned."""
    weather_call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}
    dev = {"role": "developer", "content": "Answer in French.\nBe brief."}
    cases = [
        ("plain", {"messages": [{"role": "system", "content": "You are terse."}, user("Hi"), assistant("Hello."),
                                user("Count to 3")], "add_generation_prompt": True}),
        ("no_system_gen0", {"messages": [user("Hi"), assistant("Hello.")], "add_generation_prompt": False}),
        ("no_system_gen1", {"messages": [user("Hi"), assistant("Hello."), user("  naïve 🙂 \n\t text  ")],
                            "add_generation_prompt": True}),
        ("developer_reasoning_high", {"messages": [dev, user("Bonjour?")], "add_generation_prompt": True,
                                      "extra": {"reasoning_effort": "high"}}),
        ("reasoning_low_identity", {"messages": [user("2+2?")], "add_generation_prompt": True,
                                    "extra": {"reasoning_effort": "low", "model_identity": "You are a test model."}}),
        ("tools", {"messages": [{"role": "system", "content": "Use tools."}, user("Weather in Paris?")],
                   "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL, CLOCK_TOOL, FLIGHT_TOOL]}}),
        ("tools_no_developer_message", {"messages": [user("What time is it?")], "add_generation_prompt": True,
                                        "extra": {"tools": [CLOCK_TOOL]}}),
        ("builtin_tools_reasoning_low", {"messages": [user("Look it up")], "add_generation_prompt": True,
                           "extra": {"builtin_tools": ["browser", "python"], "reasoning_effort": "low"}}),
        ("builtin_python_and_functions", {"messages": [dev, user("Plot it")], "add_generation_prompt": True,
                                          "extra": {"builtin_tools": ["python"], "tools": [WEATHER_TOOL]}}),
        # A finished tool round: the tool call's analysis is dropped because a final answer follows.
        ("tool_round_done", {"messages": [dev, user("Weather in Paris?"),
                                          {"role": "assistant", "thinking": "Need the weather tool.",
                                           "tool_calls": [weather_call]},
                                          {"role": "tool", "content": "{\"temp\": 18}"},
                                          {"role": "assistant", "content": "18°C à Paris.", "thinking": "Report it."},
                                          user("Et Zürich?")],
                             "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}}),
        # A pending tool round: the analysis (here in `content`) is kept; string arguments are
        # tojson'ed as a string; a tool result that is a mapping is tojson'ed too.
        ("tool_round_pending", {"messages": [user("Weather in Zürich?"),
                                             {"role": "assistant", "content": "Let me check.",
                                              "tool_calls": [{"type": "function", "function": {
                                                  "name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]},
                                             {"role": "tool", "content": {"temp": 11, "sky": "clear"}}],
                                "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}}),
        # A bare call (no `function` wrapper) with its own content_type, then thinking only.
        ("tool_call_content_type", {"messages": [user("Now?"),
                                                 {"role": "assistant", "thinking": "Clock.", "tool_calls": [
                                                     {"name": "now", "arguments": {}, "content_type": "<|constrain|>json"}]},
                                                 {"role": "tool", "content": "12:00"}],
                                    "add_generation_prompt": True, "extra": {"tools": [CLOCK_TOOL]}}),
        # Training form: the last assistant turn keeps its analysis and ends with <|return|>.
        ("training_last_turn", {"messages": [user("2+2?"), {"role": "assistant", "thinking": "Add.", "content": "4"},
                                             user("3+3?"), {"role": "assistant", "thinking": "Add again.", "content": "6"}],
                                "add_generation_prompt": False}),
        # The template reads `thinking`; vLLM-style `reasoning_content` is not rendered.
        ("reasoning_content_ignored", {"messages": [user("hi"), {"role": "assistant", "content": "hello",
                                                                 "reasoning_content": "greet back"}],
                                       "add_generation_prompt": False}),
        ("refuses_channel_tags_in_content", {"messages": [user("a"), assistant("<|channel|>analysis<|message|>x")],
                                             "add_generation_prompt": True}),
        ("refuses_tool_without_call", {"messages": [user("a"), {"role": "tool", "content": "r"}],
                                       "add_generation_prompt": True}),
        ("refuses_content_and_thinking_with_call", {"messages": [user("a"), {"role": "assistant", "content": "c",
                                                                             "thinking": "t", "tool_calls": [weather_call]}],
                                                    "add_generation_prompt": True}),
        # OpenAI clients send `content: null` beside tool_calls; jinja2 cannot test `in` on None.
        ("refuses_null_content_with_call", {"messages": [user("a"), {"role": "assistant", "content": None,
                                                                     "tool_calls": [weather_call]}],
                                            "add_generation_prompt": True}),
        ("refuses_tool_without_description", {"messages": [user("a")], "add_generation_prompt": True,
                                              "extra": {"tools": [{"type": "function", "function": {"name": "f"}}]}}),
    ]
    # The first set of cases (branch tok2), kept beside the ones above.
    search_tool = {"type": "function", "function": {
        "name": "search", "description": "Search the catalog",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "What to look for"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "array", "items": {"type": "number"}, "nullable": True},
            "order": {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
            "limit": {"type": "integer", "default": 10},
            "exact": {"type": "boolean"},
            "filter": {"type": "object", "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                       "required": ["min"]},
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "anything": {}},
            "required": ["query"]}}}
    gpt_tool_turns = [
        user("Weather in Zürich?"),
        {"role": "assistant", "thinking": "Need the weather tool.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}]},
        {"role": "tool", "content": "{\"temp\": 11}"},
    ]
    cases += [
        ("single_user", {"messages": [user("Hello!")], "add_generation_prompt": True}),
        ("system_becomes_developer", {"messages": [{"role": "system", "content": "Be brief."}, user("2+2?"),
                                                   assistant("4"), user("and 3+3?")], "add_generation_prompt": True}),
        ("developer_role", {"messages": [{"role": "developer", "content": "Answer in French."}, user("Hi")],
                            "add_generation_prompt": True}),
        ("reasoning_effort_and_identity", {"messages": [user("x")], "add_generation_prompt": True,
                                           "extra": {"reasoning_effort": "high",
                                                     "model_identity": "You are a test model."}}),
        ("final_turn_with_thinking", {"messages": [user("2+2?"), {"role": "assistant", "content": "4",
                                                                  "thinking": "Add two and two."}],
                                      "add_generation_prompt": False}),
        ("earlier_thinking_dropped", {"messages": [user("a"), {"role": "assistant", "content": "b", "thinking": "t"},
                                                   user("c")], "add_generation_prompt": True}),
        ("tool_call_pending", {"messages": gpt_tool_turns, "add_generation_prompt": True,
                               "extra": {"tools": [WEATHER_TOOL, CLOCK_TOOL]}}),
        ("tool_call_then_final", {"messages": gpt_tool_turns + [assistant("11°C in Zürich."), user("thanks")],
                                  "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}}),
        ("tool_call_content_as_analysis", {"messages": [user("time?"), {"role": "assistant", "content": "Check clock.",
                                                                          "tool_calls": [{"function": {
                                                                              "name": "now", "arguments": {}}}]},
                                                        {"role": "tool", "content": "12:00"}],
                                           "add_generation_prompt": True, "extra": {"tools": [CLOCK_TOOL]}}),
        ("typescript_parameter_types", {"messages": [{"role": "system", "content": "Use tools."}, user("find moe")],
                                        "add_generation_prompt": True, "extra": {"tools": [search_tool]}}),
        ("builtin_tools", {"messages": [user("look it up")], "add_generation_prompt": True,
                           "extra": {"builtin_tools": ["browser", "python"]}}),
        ("channel_tags_in_content_refused", {"messages": [user("a"), assistant("<|channel|>final<|message|>b")]}),
        ("tool_without_call_refused", {"messages": [user("a"), {"role": "tool", "content": "r"}]}),
        ("content_and_thinking_with_tool_call_refused", {"messages": [user("a"), {
            "role": "assistant", "content": "c", "thinking": "t",
            "tool_calls": [{"function": {"name": "now", "arguments": {}}}]}], "extra": {"tools": [CLOCK_TOOL]}}),
    ]
    out = []
    for name, context in cases:
        context.update({"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "now": "2025-08-05T12:00:00"})
        out.append({"name": "gpt_oss/" + name, "template": GPT_OSS, "context": context})
    return out


# (name, template, extra variables) rendered with messages=[user "hi"].
SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks
    ("ws/trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("ws/lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("ws/lstrip_not_for_variables", "a\n    {{ 'x' }}\n  b", {}),
    ("ws/minus_both", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c", {}),
    ("ws/plus_disables_lstrip", "a\n    {%+ if true %}b{% endif %}", {}),
    ("ws/plus_disables_trim", "{% if true +%}\nb{% endif %}", {}),
    ("ws/variable_minus", "a   {{- 'b' -}}   c", {}),
    ("ws/comment", "a\n  {# comment #}\nb {#- x -#} c", {}),
    ("ws/trailing_newline_dropped", "line\n", {}),
    ("ws/two_trailing_newlines", "line\n\n", {}),
    ("ws/crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("ws/raw", "{% raw %}{{ not evaluated }}{% endraw %}\nx", {}),
    ("ws/tag_after_text_same_line", "text {% if true %}\nx{% endif %}", {}),
    ("ws/indented_nested", "{% for i in [1,2] %}\n  {% if i == 2 %}\n    two\n  {% else %}\n    other\n  {% endif %}\n{% endfor %}", {}),
    # literals and printing (Python str/repr)
    ("print/none_bool", "{{ none }} {{ None }} {{ true }} {{ False }}", {}),
    ("print/numbers", "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 2.0 }} {{ 1e20 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1_000 }}", {}),
    ("print/list_dict", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'n': [1]} }} {{ ('t', 1) | list }}", {}),
    ("print/repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n'] }}", {}),
    ("print/undefined", "[{{ nothing }}][{{ messages[0].missing }}][{{ messages[5] }}]", {}),
    ("print/escapes", "{{ 'tab\\tnl\\nuni\\u00e9\\x41' }}|{{ \"q\\\"\" }}", {}),
    ("print/adjacent_strings", "{{ 'a' 'b' \"c\" }}", {}),
    # expressions
    ("expr/concat_tilde", "{{ 'n=' ~ 5 ~ none ~ nothing ~ [1] }}", {}),
    ("expr/precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ not true or true }} {{ 'a' ~ (1 + 2) }}", {}),
    ("error/concat_binds_tighter_than_plus", "{{ 'a' ~ 1 + 2 }}", {}),
    ("expr/compare_chain", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 'a' != 'a' }}", {}),
    ("expr/in", "{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 'z' not in 'abc' }} {{ 'x' in nothing }}", {}),
    ("expr/and_or_values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ none or none }} {{ [] or {} }}", {}),
    ("expr/ternary", "{{ 'y' if true else 'n' }} {{ 'y' if false else 'n' }} [{{ 'y' if false }}] {{ 'a' if 0 else 'b' if 1 else 'c' }}", {}),
    ("expr/list_dict_literals", "{{ [1, [2, 3], {'a': [4]}][2]['a'][0] }} {{ {'a': 1, 'a': 2} }} {{ [1,2,][1] }}", {}),
    ("expr/string_mult_add", "{{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 'x' + 'y' }} {{ 3 * 'z' }}", {}),
    ("expr/attribute_vs_item", "{{ messages[0].role }} {{ messages[0]['content'] }} {{ {'items': 5}['items'] }} {{ {'a': {'b': 2}}.a.b }} {{ [10, 20].1 }}", {}),
    ("expr/unary", "{{ -(3) }} {{ +3 }} {{ - 2.5 }} {{ not none }} {{ not not 1 }}", {}),
    ("expr/truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, {'a':1}, none, 0.0, 0.5] %}{{ 'T' if v else 'F' }}{% endfor %}", {}),
    # slices
    ("slice/list", "{{ [1,2,3,4,5][::-1] }} {{ [1,2,3,4,5][1:3] }} {{ [1,2,3,4,5][-2:] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3,4,5][4:1:-2] }} {{ [1,2,3][10:] }} {{ [1,2,3][:-1] }}", {}),
    ("slice/string", "{{ 'héllo'[::-1] }} {{ 'héllo'[1:3] }} {{ 'héllo'[-1] }} {{ 'héllo'[1] }} {{ 'abc'[5:] }}|", {}),
    ("slice/messages_reverse", "{% for m in messages[::-1] %}{{ m.content }}{% endfor %}", {"messages": [user("a"), user("b"), user("c")]}),
    # tests
    ("test/types", "{{ 1 is number }} {{ true is number }} {{ true is integer }} {{ 1 is integer }} {{ 1.0 is float }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is mapping }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ none is none }} {{ x is undefined }} {{ x is defined }} {{ range is callable }}", {}),
    ("test/booleans", "{{ false is false }} {{ 0 is false }} {{ true is true }} {{ 1 is true }} {{ false is boolean }} {{ none is sameas none }} {{ 1 is sameas 1 }}", {}),
    ("test/args", "{{ 6 is divisibleby 3 }} {{ 7 is divisibleby(3) }} {{ 3 is odd }} {{ 4 is even }} {{ 2 is in [1,2] }} {{ 'a' is eq 'a' }} {{ 3 is gt 2 }} {{ 3 is lt 2 }} {{ 3 is ge 3 }} {{ 'abc' is lower }} {{ 'ABC' is upper }}", {}),
    ("test/not", "{{ x is not defined }} {{ none is not none }} {{ not x is defined }} {{ 'a' if x is not defined and true else 'b' }}", {}),
    # filters
    ("filter/string_filters", "{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'Hello' | upper }}|{{ 'Hello' | lower }}|{{ 'hello wORLD-foo (bar' | title }}|{{ 'hELLO world' | capitalize }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 5 | string }}{{ none | string }}", {}),
    ("filter/length_count", "{{ 'héllo' | length }} {{ [1,2] | count }} {{ {'a':1} | length }} {{ messages | length }} {{ nothing | length }}", {}),
    ("filter/join", "{{ [1, 'a', none] | join }} {{ ['a','b'] | join(', ') }} {{ messages | join('-', attribute='role') }} {{ 'abc' | join('.') }}", {}),
    ("filter/default", "{{ nothing | default('dflt') }} {{ none | default('dflt') }} {{ '' | default('dflt', true) }} {{ 0 | d('zero', boolean=true) }} {{ 'x' | default('y') }} [{{ nothing | default }}]", {}),
    ("filter/first_last_list", "{{ [3,4,5] | first }} {{ [3,4,5] | last }} {{ 'abc' | first }} {{ 'abc' | list }} {{ {'a':1,'b':2} | list }} [{{ [] | first }}]", {}),
    ("filter/selectattr_map", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ messages | rejectattr('role', 'eq', 'user') | list | length }} {{ messages | map(attribute='missing', default='?') | join }} {{ messages | selectattr('name') | list }} {{ messages | selectattr('name', 'defined') | map(attribute='name') | join(',') }}",
     {"messages": [user("a"), assistant("b"), {"role": "user", "content": "c", "name": "bob"}]}),
    ("filter/select_reject", "{{ [1,2,3,4] | select('odd') | list }} {{ [1,2,3,4] | reject('even') | list }} {{ [0, 1, '', 'a'] | select | list }} {{ [1,2,3] | select('gt', 1) | list }} {{ ['a','b'] | map('upper') | list }}", {}),
    ("filter/tojson", "{{ {'b': [1, 2.5, true, none], 'a': 'é\"\\n<>&\\'', 'c': {}} | tojson }}|{{ [1, {'x': []}] | tojson(indent=2) }}|{{ {'b':1,'a':2} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [1,2] | tojson(separators=(',', ':')) }}|{{ 1e100 | tojson }}|{{ 3.0 | tojson }}", {}),
    ("filter/tojson_tools", "{% for t in tools %}{{ t | tojson }}\n{{ t | tojson(indent=4) }}\n{% endfor %}", {"tools": [WEATHER_TOOL, CLOCK_TOOL]}),
    ("filter/items_dictsort", "{% for k, v in {'b': 1, 'a': 2} | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'b': 1, 'A': 2, 'c': 0} | dictsort %}{{ k }}{{ v }}{% endfor %}{{ {'b': 1, 'a': 2} | dictsort(by='value', reverse=true) }}", {}),
    ("filter/int_float_round_abs", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 'q' | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(0, 'ceil') }} {{ '0x1A' | int(0, 16) }} {{ 'ff' | int(base=16) }}", {}),
    ("filter/sort_unique_reverse", "{{ [3,1,2] | sort }} {{ ['b','A','c'] | sort }} {{ ['b','A','c'] | sort(case_sensitive=true) }} {{ [3,1,2] | sort(reverse=true) }} {{ messages | sort(attribute='content') | map(attribute='content') | join }} {{ [1,2,1,3,2] | unique | list }} {{ ['a','A','b'] | unique | list }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }}",
     {"messages": [user("b"), user("a"), user("c")]}),
    ("filter/sum_min_max", "{{ [1,2,3] | sum }} {{ [1.5, 2] | sum }} {{ messages | sum(attribute='n') }} {{ [3,1,2] | min }} {{ [3,1,2] | max }} {{ ['b','A'] | max }} {{ [1,2] | sum(start=10) }}",
     {"messages": [{"role": "user", "content": "a", "n": 2}, {"role": "user", "content": "b", "n": 5}]}),
    ("filter/indent_center_wordcount", "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent('> ', blank=true) }}|{{ 'ab' | center(7) }}|{{ 'one two,three' | wordcount }}|{{ '<a href=\"x\">' | e }}|{{ 'x' | safe }}", {}),
    ("filter/batch_attr", "{{ [1,2,3,4,5] | batch(2) | list }} {{ [1,2,3] | batch(2, 0) | list }} {{ messages[0] | attr('role') }}", {}),
    ("filter/chained_on_expression", "{{ messages[0]['content'] + ' x ' | trim }}|{{ (messages[0]['content'] + ' x ') | trim }}|{{ -3 | abs }}|{{ [1,2] | length + 1 }}", {}),
    # string methods
    ("method/strip_split", "{{ '  a  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na\\n'.lstrip('\\n') }}|{{ 'a\\n\\n'.rstrip('\\n') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'x</think>y</think>z'.split('</think>')[-1] }}", {}),
    ("method/affixes_case", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello wORLD'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aXbXc'.replace('X', '-') }} {{ 'aXbXc'.replace('X', '-', 1) }}", {}),
    ("method/find_count_misc", "{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ '  '.isspace() }} {{ '123'.isdigit() }} {{ 'ab'.isalpha() }}", {}),
    ("method/dict_methods", "{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}{{ v }}{% endfor %} {{ {'x': 1}.keys() | list }} {{ {'x': 1}.values() | list }} {{ {'x': 1}.get('x') }} {{ {'x': 1}.get('z') }} {{ {'x': 1}.get('z', 'd') }} {{ messages[0].get('role') }}", {}),
    ("method/list_methods", "{{ [1,2,3].index(2) }} {{ [1,2,2].count(2) }}", {}),
    # statements
    ("stmt/if_elif_else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
    ("stmt/for_loop_vars", "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('o','e') }} {% endfor %}", {}),
    ("stmt/for_else_filter", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.index }}{{ loop.length }}{% endfor %} {% for x in [1] if false %}x{% else %}none{% endfor %}", {}),
    ("stmt/for_unpack_dict", "{% for k in {'a':1,'b':2} %}{{ k }}{% endfor %} {% for a, b in [[1,2],[3,4]] %}{{ a + b }}{% endfor %} {% for (a, b) in [('x','y')] %}{{ b }}{{ a }}{% endfor %} {% for c in 'héj' %}[{{ c }}]{% endfor %}", {}),
    ("stmt/break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("stmt/nested_loops", "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }}{{ loop.index }},{% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("stmt/set_scoping", "{% set x = 1 %}{% for i in [1,2] %}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}|{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("stmt/namespace", "{% set ns = namespace(count=0, found=false, items='') %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% if m.role == 'assistant' %}{% set ns.found = true %}{% endif %}{% set ns.items = ns.items + m.content %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns.items }} {{ ns.missing }}",
     {"messages": [user("a"), assistant("b"), user("c")]}),
    ("stmt/set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 'x', 'y' %}{{ t | join }} {% set block %}\n  inner {{ a }}\n{% endset %}[{{ block }}] {% set up | upper %}shout{% endset %}{{ up }}", {}),
    ("stmt/macro", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }} {{ greet('D') | upper }}", {}),
    ("stmt/macro_recursion_and_outer_vars", "{% set sep = '/' %}{% macro count(n) %}{% if n > 0 %}{{ n }}{{ sep }}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}", {}),
    ("stmt/macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}", {}),
    ("stmt/call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ messages[0].content }}{% endcall %} {% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1,2]) %}<{{ x }}>{% endcall %}", {}),
    ("stmt/filter_block", "{% filter upper %}shout {{ 'it' }}{% endfilter %} {% filter replace('a', 'o') | trim %}  banana  {% endfilter %}", {}),
    ("stmt/with", "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]", {}),
    ("stmt/generation_tag_absent", "{% for m in messages %}{{ m.content }}{% endfor %}", {}),
    ("stmt/range_variants", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}", {}),
    ("stmt/dict_global", "{{ dict(a=1, b='x') }} {{ dict({'z': 0}, y=1) }}", {}),
    ("stmt/raise_exception", "{% if messages | length > 0 %}{{ raise_exception('refused: ' ~ messages | length) }}{% endif %}", {}),
    # errors jinja2 raises at render time
    ("error/undefined_attribute_of_undefined", "{{ nothing.attr }}", {}),
    ("error/undefined_call", "{{ nothing() }}", {}),
    ("error/add_str_int", "{{ 'a' + 1 }}", {}),
    ("error/add_undefined", "{{ nothing + 'a' }}", {}),
    ("error/list_append_refused", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("error/unknown_filter", "{{ 'a' | nosuchfilter }}", {}),
    ("error/division_by_zero", "{{ 1 / 0 }}", {}),
    ("error/none_iteration", "{% for x in none %}{% endfor %}", {}),
    ("error/compare_str_int", "{{ 'a' < 1 }}", {}),
    ("error/set_attribute_not_namespace", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("error/tojson_undefined", "{{ nothing | tojson }}", {}),
    # syntax errors
    ("syntax/unclosed_if", "{% if true %}x", {}),
    ("syntax/unclosed_for", "{% for x in y %}x{% endif %}", {}),
    ("syntax/bad_expression", "{{ 1 + }}", {}),
    ("syntax/unknown_tag", "{% frobnicate %}", {}),
    ("syntax/unterminated_string", "{{ 'abc }}", {}),
    ("syntax/unclosed_variable", "text {{ x", {}),
    ("syntax/stray_endfor", "{% endfor %}", {}),
    ("syntax/unclosed_comment", "{# never closed", {}),
    ("syntax/break_outside_loop", "{% break %}", {}),
]


def snippet_cases():
    cases = []
    for name, template, extra in SNIPPETS:
        extra = dict(extra)
        messages = extra.pop("messages", [user("hi")])
        cases.append({"name": name, "template": template,
                      "context": {"messages": messages, "add_generation_prompt": False, "extra": extra}})
    return cases


def main():
    cases = real_template_cases() + snippet_cases()
    for case in cases:
        try:
            case["rendered"] = render(load_template(case["template"]), case["context"])
        except Exception as error:  # the case records what jinja2 raised
            case["error"] = f"{type(error).__name__}: {error}"
    out = {"generator": "scripts/gen_chat_template_reference.py", "jinja2": jinja2.__version__, "cases": cases}
    path = os.path.join(FIXTURES, "chat", "chat_template_reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
