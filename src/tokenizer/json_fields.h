// Typed, error-reporting accessors for the fields of tokenizer.json components: a missing or
// mistyped field becomes an Error naming the field, never a nlohmann exception.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "tokenizer/regex.h"

namespace moeserve::tok {

// The "type" of a component object (`what` names the component kind for the message).
Result<std::string> json_type(const nlohmann::json& spec, const char* what);
Result<std::string> json_string(const nlohmann::json& spec, const char* key);
// A boolean field; `fallback` when absent or null.
Result<bool> json_bool(const nlohmann::json& spec, const char* key, bool fallback);
Result<int64_t> json_int(const nlohmann::json& spec, const char* key, int64_t fallback);
Result<const nlohmann::json*> json_array(const nlohmann::json& spec, const char* key);
// {"String": s} (literal) or {"Regex": r}, compiled.
Result<Regex> json_pattern(const nlohmann::json& spec, const char* key);

}  // namespace moeserve::tok
