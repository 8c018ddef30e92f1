// Range checks for numeric flags, with plain messages. CLI11's PositiveNumber and
// NonNegativeNumber print their double bounds in full, so `--max-num-seqs 0` answered "Value 0
// not in range 0.000000 to 179769313486231570814527423731704356798070567525844996598917476803157
// 2607800285387605895586327668781715404589535143824642343213268894641827684675467035375169860499
// 1054..." (309 digits). CLI11 prefixes each message with the flag's name:
// "--max-num-seqs: must be a positive integer, got 0".
#pragma once

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace moeserve::cli {

// An integer in [min, max]; `what` describes it in the message ("a positive integer"), `tag` in
// --help ("POSITIVE", as CLI11's own validators show).
inline CLI::Validator int_in_range(long long min, long long max, const std::string& what, const std::string& tag) {
  return CLI::Validator(
      [min, max, what](std::string& input) -> std::string {
        long long value = 0;
        if (!CLI::detail::lexical_cast(input, value) || value < min || value > max) {
          return "must be " + what + ", got " + input;
        }
        return {};
      },
      tag);
}

inline CLI::Validator positive_int() { return int_in_range(1, INT_MAX, "a positive integer", "POSITIVE"); }
inline CLI::Validator non_negative_int() {
  return int_in_range(0, INT_MAX, "a non-negative integer", "NONNEGATIVE");
}

// A finite number >= 0 (NaN and infinity are refused: no comparison catches NaN).
inline CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value) || !std::isfinite(value) || !(value >= 0)) {
          return "must be a finite number >= 0, got " + input;
        }
        return {};
      },
      "NONNEGATIVE");
}

// A number in [min, max]; unlike CLI::Range, NaN is refused (it fails every comparison, so a
// range check of `value < min || value > max` lets it through).
inline CLI::Validator number_in_range(double min, double max, const std::string& what, const std::string& tag) {
  return CLI::Validator(
      [min, max, what](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value) || !(value >= min && value <= max)) {
          return "must be " + what + ", got " + input;
        }
        return {};
      },
      tag);
}

// An unsigned 64-bit integer written in decimal (CLI11 alone took "-1", "" and values past
// 2^64 for a uint64_t and stored something else).
inline CLI::Validator uint64_decimal() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        uint64_t value = 0;
        const char* end = input.data() + input.size();
        const auto [at, error] = std::from_chars(input.data(), end, value);
        if (input.empty() || error != std::errc() || at != end) {
          return "must be an integer from 0 to 18446744073709551615, got '" + input + "'";
        }
        return {};
      },
      "UINT");
}

}  // namespace moeserve::cli
