// The pythonic tool-call form (vLLM's `pythonic` and `llama4_pythonic` parsers, Llama 3.2 and
// Llama 4 with their pythonic templates): an answer that is a Python list of calls with keyword
// arguments of literal values, [get_weather(city='Paris', days=[1, 2]), now()].
#pragma once

#include <string_view>
#include <vector>

#include "server/tool_call_parser.h"

namespace moeserve {

// The calls of `text`, which must be one such list and nothing but trailing whitespace after it.
// Values: strings ('...', "...", triple-quoted, with Python's escapes), integers and floats (a
// leading minus too, which vLLM's ast walk refuses), True / False / None, lists and dicts with
// string or integer keys. Arguments are written as Python's json.dumps writes them
// (ensure_ascii: its default; vLLM's pythonic parser passes False). False (and `out` untouched)
// when the text is anything else, positional arguments included (vLLM drops them silently).
bool pythonic_calls(std::string_view text, bool ensure_ascii, std::vector<ToolCall>& out);

}  // namespace moeserve
