// Typed access to config.json fields: each getter names the field and the offending value in
// its error, so a bad config is refused with one clear message. `null` counts as absent (HF
// writes explicit nulls for unset optionals).
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve {

class ConfigReader {
 public:
  explicit ConfigReader(const nlohmann::json& json) : json_(json) {}

  bool has(const std::string& key) const;
  const nlohmann::json& raw() const { return json_; }

  Result<int> get_int(const std::string& key) const;  // required, > 0
  Result<int> get_int_or(const std::string& key, int fallback) const;
  Result<double> get_double_or(const std::string& key, double fallback) const;
  Result<bool> get_bool_or(const std::string& key, bool fallback) const;
  Result<std::string> get_string_or(const std::string& key, const std::string& fallback) const;

 private:
  const nlohmann::json& json_;
};

}  // namespace moeserve
