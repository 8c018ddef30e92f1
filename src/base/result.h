// Result<T>: the return type of everything a user's input can make fail (corrupt files, bad
// configs, malformed requests). Programmer bugs use MS_CHECK instead. An Error carries one
// human-readable message that names what was wrong and where; callers add context as it
// travels up with `with_context`.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace moeserve {

struct Error {
  std::string message;

  // Prefixes the message with the caller's context: "loading X: <message>".
  Error with_context(const std::string& context) const { return Error{context + ": " + message}; }
};

template <typename... Args>
Error make_error(fmt::format_string<Args...> format, Args&&... args) {
  return Error{fmt::format(format, std::forward<Args>(args)...)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<Error>(state_); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

}  // namespace moeserve

// Propagates an error from an expression returning Result<...>/Status.
#define MS_RETURN_IF_ERROR(expr)              \
  do {                                        \
    auto ms_status_ = (expr);                 \
    if (!ms_status_.ok()) return ms_status_.error(); \
  } while (0)

#define MS_CONCAT_INNER_(a, b) a##b
#define MS_CONCAT_(a, b) MS_CONCAT_INNER_(a, b)

// `MS_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the error.
#define MS_ASSIGN_OR_RETURN(lhs, expr) MS_ASSIGN_OR_RETURN_IMPL_(MS_CONCAT_(ms_result_, __LINE__), lhs, expr)
#define MS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.error();              \
  lhs = std::move(tmp).value()
