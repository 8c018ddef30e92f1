// The builtin filters, tests and global functions of jinja2 (plus transformers' tojson,
// raise_exception and strftime_now). Each family lives in its own file; the interpreter
// dispatches by name through these entry points.
#pragma once

#include <ctime>
#include <optional>
#include <string>

#include "base/result.h"
#include "tokenizer/chat/chat_template.h"
#include "tokenizer/chat/interpreter.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

// Text and scalar filters (filters_text.cpp); nullopt when `name` is not one of them.
Result<std::optional<Value>> apply_text_filter(Interpreter& interpreter, const std::string& name,
                                               const Value& subject, CallArgs& args);
// Sequence and mapping filters (filters_sequence.cpp); nullopt when `name` is not one of them.
Result<std::optional<Value>> apply_sequence_filter(Interpreter& interpreter, const std::string& name,
                                                   const Value& subject, CallArgs& args);

// Python's len() as jinja2's `length` filter uses it (undefined has length 0).
Result<int64_t> value_length(const Value& value);

// Adds range, dict, namespace, raise_exception and strftime_now to `scope`; strftime_now
// formats `now` when given, else the current local time.
void add_global_functions(Scope& scope, const std::optional<std::tm>& now = std::nullopt);

}  // namespace moeserve::chat
