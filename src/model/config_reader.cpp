#include "model/config_reader.h"

#include <cmath>
#include <limits>

namespace moeserve {

std::string json_excerpt(const nlohmann::json& value) {
  constexpr size_t kMaxChars = 80;
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars) + "...";
  return text;
}

bool ConfigReader::has(const std::string& key) const {
  if (!json_.is_object()) return false;
  const auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

Result<int> ConfigReader::get_int(const std::string& key) const {
  if (!has(key)) return make_error("config.json: required field '{}' is missing", name(key));
  MS_ASSIGN_OR_RETURN(int value, get_int_or(key, 0));
  if (value <= 0) return make_error("config.json: '{}' must be positive, got {}", name(key), value);
  return value;
}

Result<int> ConfigReader::get_int_or(const std::string& key, int fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  // An unsigned above INT64_MAX reads back negative through int64_t, so check it separately.
  const bool fits = value.is_number_unsigned()
                        ? value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max())
                        : value.is_number_integer() && value.get<int64_t>() <= std::numeric_limits<int>::max() &&
                              value.get<int64_t>() >= std::numeric_limits<int>::min();
  if (!fits) return make_error("config.json: '{}' must be an integer, got {}", name(key), json_excerpt(value));
  return static_cast<int>(value.get<int64_t>());
}

Result<int> ConfigReader::get_positive_int_or(const std::string& key, int fallback) const {
  MS_ASSIGN_OR_RETURN(int value, get_int_or(key, fallback));
  if (has(key) && value <= 0) return make_error("config.json: '{}' must be positive, got {}", name(key), value);
  return value;
}

Result<int> ConfigReader::get_non_negative_int_or(const std::string& key, int fallback) const {
  MS_ASSIGN_OR_RETURN(int value, get_int_or(key, fallback));
  if (has(key) && value < 0) return make_error("config.json: '{}' must not be negative, got {}", name(key), value);
  return value;
}

Result<double> ConfigReader::get_double_or(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  // 1e999 parses as infinity; no config field means that.
  if (!value.is_number() || !std::isfinite(value.get<double>())) {
    return make_error("config.json: '{}' must be a number, got {}", name(key), json_excerpt(value));
  }
  return value.get<double>();
}

Result<double> ConfigReader::get_positive_double_or(const std::string& key, double fallback) const {
  MS_ASSIGN_OR_RETURN(double value, get_double_or(key, fallback));
  if (has(key) && !(value > 0)) return make_error("config.json: '{}' must be positive, got {}", name(key), value);
  return value;
}

Result<bool> ConfigReader::get_bool_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_boolean()) {
    return make_error("config.json: '{}' must be true or false, got {}", name(key), json_excerpt(value));
  }
  return value.get<bool>();
}

Result<std::string> ConfigReader::get_string_or(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_string()) {
    return make_error("config.json: '{}' must be a string, got {}", name(key), json_excerpt(value));
  }
  return value.get<std::string>();
}

}  // namespace moeserve
