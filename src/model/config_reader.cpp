#include "model/config_reader.h"

namespace moeserve {

bool ConfigReader::has(const std::string& key) const {
  const auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

Result<int> ConfigReader::get_int(const std::string& key) const {
  if (!has(key)) return make_error("config.json: required field '{}' is missing", key);
  MS_ASSIGN_OR_RETURN(int value, get_int_or(key, 0));
  if (value <= 0) return make_error("config.json: '{}' must be positive, got {}", key, value);
  return value;
}

Result<int> ConfigReader::get_int_or(const std::string& key, int fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_number_integer() || value.get<int64_t>() > (1ll << 31) - 1 || value.get<int64_t>() < -(1ll << 31)) {
    return make_error("config.json: '{}' must be an integer, got {}", key, value.dump());
  }
  return static_cast<int>(value.get<int64_t>());
}

Result<double> ConfigReader::get_double_or(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_number()) return make_error("config.json: '{}' must be a number, got {}", key, value.dump());
  return value.get<double>();
}

Result<bool> ConfigReader::get_bool_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_boolean()) return make_error("config.json: '{}' must be true or false, got {}", key, value.dump());
  return value.get<bool>();
}

Result<std::string> ConfigReader::get_string_or(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& value = json_.at(key);
  if (!value.is_string()) return make_error("config.json: '{}' must be a string, got {}", key, value.dump());
  return value.get<std::string>();
}

}  // namespace moeserve
