// FieldReader: typed, range-checked reads of request fields.
#include "server/field_reader.h"

#include <cmath>

#include <fmt/format.h>

namespace moeserve {

std::optional<int64_t> json_integer(const Json& value) {
  if (value.is_number_integer()) {
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return value.get<int64_t>();
  }
  if (value.is_number_float()) {
    const double number = value.get<double>();
    if (std::isfinite(number) && number == std::floor(number) && std::fabs(number) < 9.2e18) {
      return static_cast<int64_t>(number);
    }
  }
  return std::nullopt;
}

const Json* FieldReader::field(const std::string& key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void FieldReader::fail(std::string message, const std::string& param) {
  if (!error_) error_ = bad_request(std::move(message), param);
}

std::optional<bool> FieldReader::boolean(const std::string& key) {
  const Json* value = field(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    fail(fmt::format("`{}` must be a boolean", key), key);
    return std::nullopt;
  }
  return value->get<bool>();
}

std::optional<double> FieldReader::number(const std::string& key) {
  const Json* value = field(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) {
    fail(fmt::format("`{}` must be a number", key), key);
    return std::nullopt;
  }
  return value->get<double>();
}

std::optional<int64_t> FieldReader::integer(const std::string& key) {
  const Json* value = field(key);
  if (value == nullptr) return std::nullopt;
  std::optional<int64_t> result = json_integer(*value);
  if (!result) fail(fmt::format("`{}` must be an integer", key), key);
  return result;
}

std::optional<std::string> FieldReader::string(const std::string& key) {
  const Json* value = field(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    fail(fmt::format("`{}` must be a string", key), key);
    return std::nullopt;
  }
  return value->get<std::string>();
}

std::optional<double> FieldReader::number_in(const std::string& key, double low, double high) {
  std::optional<double> value = number(key);
  if (value && !(*value >= low && *value <= high)) {
    fail(fmt::format("`{}` must be in [{}, {}], got {}", key, low, high, *value), key);
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> FieldReader::integer_in(const std::string& key, int64_t low, int64_t high) {
  std::optional<int64_t> value = integer(key);
  if (value && (*value < low || *value > high)) {
    fail(fmt::format("`{}` must be in [{}, {}], got {}", key, low, high, *value), key);
    return std::nullopt;
  }
  return value;
}

}  // namespace moeserve
