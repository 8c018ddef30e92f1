// ApiResult<T>: a value or the ApiError (HTTP status + OpenAI error body) a request caused.
// The server's counterpart of base/result.h, which carries only a message.
#pragma once

#include <utility>
#include <variant>

#include "server/errors.h"

namespace moeserve {

template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : state_(std::move(value)) {}       // NOLINT: implicit by design
  ApiResult(ApiError error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(state_); }
  T& value() & { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  const T& value() const& { return std::get<T>(state_); }
  const ApiError& error() const { return std::get<ApiError>(state_); }

 private:
  std::variant<T, ApiError> state_;
};

}  // namespace moeserve

#define MS_API_CONCAT_INNER_(a, b) a##b
#define MS_API_CONCAT_(a, b) MS_API_CONCAT_INNER_(a, b)
// `MS_API_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the ApiError.
#define MS_API_ASSIGN_OR_RETURN(lhs, expr) MS_API_ASSIGN_OR_RETURN_IMPL_(MS_API_CONCAT_(ms_api_, __LINE__), lhs, expr)
#define MS_API_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.error();                  \
  lhs = std::move(tmp).value()
