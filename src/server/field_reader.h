// FieldReader: typed access to the fields of a JSON request object with OpenAI/pydantic-like
// rules (null = unset; integers may be written 3.0; numbers never accept booleans). The first
// problem found is kept as a 400 ApiError naming the field, so a parser can read every field
// and check once at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "server/errors.h"

namespace moeserve {

using Json = nlohmann::ordered_json;

class FieldReader {
 public:
  explicit FieldReader(const Json& object) : object_(object) {}

  // nullptr when the field is absent or null.
  const Json* field(const std::string& key) const;
  std::optional<bool> boolean(const std::string& key);
  std::optional<double> number(const std::string& key);
  std::optional<int64_t> integer(const std::string& key);
  std::optional<std::string> string(const std::string& key);

  // Range checks that record an error (and return nullopt) when violated.
  std::optional<double> number_in(const std::string& key, double low, double high);
  std::optional<int64_t> integer_in(const std::string& key, int64_t low, int64_t high);

  void fail(std::string message, const std::string& param);
  bool ok() const { return !error_.has_value(); }
  const ApiError& error() const { return *error_; }

 private:
  const Json& object_;
  std::optional<ApiError> error_;
};

// JSON value → int64 when it is an integer (or an integral float); nullopt otherwise.
std::optional<int64_t> json_integer(const Json& value);

}  // namespace moeserve
