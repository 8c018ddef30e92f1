// Binding a call's arguments to named parameters the way Python does (positional first,
// then keywords; an unknown keyword or a missing required argument is an error).
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "base/result.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

// Returns one value per name in `names`; parameters not passed are Undefined. The first
// `required` names must be passed.
Result<std::vector<Value>> bind_args(const std::string& function, const CallArgs& args,
                                     std::initializer_list<const char*> names, size_t required);

// Helpers for typed parameters: a missing (undefined) value yields the fallback.
Result<int64_t> int_arg(const std::string& function, const Value& value, int64_t fallback);
Result<std::string> string_arg(const std::string& function, const Value& value, const std::string& fallback);

}  // namespace moeserve::chat
