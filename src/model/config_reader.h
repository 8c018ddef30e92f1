// Typed access to config.json fields: each getter names the field and the offending value in
// its error, so a bad config is refused with one clear message. `null` counts as absent (HF
// writes explicit nulls for unset optionals). No getter throws, whatever the JSON holds: a
// config.json is user input, and a type error must never reach abort().
#pragma once

#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve {

class ConfigReader {
 public:
  // `prefix` names the object in errors, e.g. "quantization_config." for its nested fields.
  explicit ConfigReader(const nlohmann::json& json, std::string prefix = "")
      : json_(json), prefix_(std::move(prefix)) {}

  bool has(const std::string& key) const;
  const nlohmann::json& raw() const { return json_; }

  Result<int> get_int(const std::string& key) const;  // required, > 0
  Result<int> get_int_or(const std::string& key, int fallback) const;
  // Optional sizes and counts: absent (or null) gives `fallback`; a present value must be > 0
  // (positive) or >= 0 (non-negative), so a 0 or -1 is refused here, not met by a kernel later.
  Result<int> get_positive_int_or(const std::string& key, int fallback) const;
  Result<int> get_non_negative_int_or(const std::string& key, int fallback) const;
  Result<double> get_double_or(const std::string& key, double fallback) const;  // finite
  Result<double> get_positive_double_or(const std::string& key, double fallback) const;
  Result<bool> get_bool_or(const std::string& key, bool fallback) const;
  Result<std::string> get_string_or(const std::string& key, const std::string& fallback) const;

 private:
  std::string name(const std::string& key) const { return prefix_ + key; }

  const nlohmann::json& json_;
  std::string prefix_;
};

// `value` for an error message: its JSON text on one line, cut at 80 characters (a config value
// can be megabytes), with bytes that are not UTF-8 replaced (plain dump() would throw on them).
std::string json_excerpt(const nlohmann::json& value);

}  // namespace moeserve
