// Field accessors for tokenizer.json components (see json_fields.h).
#include "tokenizer/json_fields.h"

namespace moeserve::tok {

Result<std::string> json_type(const nlohmann::json& spec, const char* what) {
  if (!spec.is_object()) return make_error("{} must be a JSON object, got {}", what, spec.type_name());
  auto it = spec.find("type");
  if (it == spec.end() || !it->is_string()) return make_error("{} has no string \"type\"", what);
  return it->get<std::string>();
}

Result<std::string> json_string(const nlohmann::json& spec, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end() || !it->is_string()) return make_error("field \"{}\" must be a string", key);
  return it->get<std::string>();
}

Result<bool> json_bool(const nlohmann::json& spec, const char* key, bool fallback) {
  auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return make_error("field \"{}\" must be a boolean", key);
  return it->get<bool>();
}

Result<int64_t> json_int(const nlohmann::json& spec, const char* key, int64_t fallback) {
  auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) return make_error("field \"{}\" must be an integer", key);
  return it->get<int64_t>();
}

Result<const nlohmann::json*> json_array(const nlohmann::json& spec, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end() || !it->is_array()) return make_error("field \"{}\" must be an array", key);
  return &*it;
}

Result<Regex> json_pattern(const nlohmann::json& spec, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end() || !it->is_object()) return make_error("field \"{}\" must be a pattern object", key);
  if (auto s = it->find("String"); s != it->end() && s->is_string()) return Regex::compile(s->get<std::string>(), true);
  if (auto r = it->find("Regex"); r != it->end() && r->is_string()) return Regex::compile(r->get<std::string>(), false);
  return make_error("field \"{}\" must be {{\"String\": ...}} or {{\"Regex\": ...}}", key);
}

}  // namespace moeserve::tok
