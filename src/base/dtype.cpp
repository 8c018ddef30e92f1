#include "base/dtype.h"

#include <algorithm>
#include <cmath>

#include "base/check.h"

namespace moeserve {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
    case DType::kI16: return 2;
    case DType::kI8: return 1;
    case DType::kU8: return 1;
    case DType::kBool: return 1;
  }
  MS_CHECK(false);
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  MS_CHECK(false);
  return "";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kI64,
                      DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    if (dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 ||
         dtype == DType::kF8E4M3;
}

float f16_to_f32(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1u;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? INFINITY : NAN;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

uint16_t f32_to_f16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  const uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7e00u;
  if (magnitude >= 65520.0f) return sign | 0x7c00u;
  if (magnitude < std::ldexp(1.0f, -14)) {  // subnormal: units of 2^-24, round half even
    const float units = magnitude * std::ldexp(1.0f, 24);
    return sign | static_cast<uint16_t>(std::nearbyint(units));
  }
  int exponent;
  const float fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent
  float mantissa = std::nearbyint((fraction * 2.0f - 1.0f) * 1024.0f);
  int biased = exponent - 1 + 15;
  if (mantissa >= 1024.0f) {
    mantissa = 0.0f;
    biased += 1;
  }
  if (biased >= 31) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>((biased << 10) | static_cast<int>(mantissa));
}

float f8e4m3_to_f32(uint8_t bits) {
  const uint32_t sign = (bits >> 7) & 1u;
  const uint32_t exponent = (bits >> 3) & 0xfu;
  const uint32_t mantissa = bits & 0x7u;
  float magnitude;
  if (exponent == 15 && mantissa == 7) {
    magnitude = NAN;
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x8u), static_cast<int>(exponent) - 10);
  }
  return sign ? -magnitude : magnitude;
}

uint8_t f32_to_f8e4m3(float value) {
  if (std::isnan(value)) return 0x7f;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float magnitude = std::min(std::fabs(value), kF8E4M3Max);
  // Spacing of the representable values at this magnitude: 2^-9 among subnormals (below 2^-6),
  // else 2^(e - 3) in [2^e, 2^(e+1)). nearbyint rounds ties to even under the default rounding
  // mode, so the quotient's even neighbour is the code with an even mantissa.
  int exponent = 0;
  std::frexp(magnitude, &exponent);  // magnitude in [2^(exponent-1), 2^exponent)
  const int step_exp = std::max(exponent - 1, -6) - 3;
  const float steps = std::nearbyint(std::ldexp(magnitude, -step_exp));  // magnitude / step, rounded
  const float rounded = std::ldexp(steps, step_exp);
  if (rounded == 0.0f) return sign;
  int rounded_exp = 0;
  std::frexp(rounded, &rounded_exp);
  if (rounded_exp - 1 < -6) return static_cast<uint8_t>(sign | static_cast<uint8_t>(steps));  // subnormal: m · 2^-9
  const int biased = rounded_exp - 1 + 7;
  const int mantissa = static_cast<int>(std::ldexp(rounded, -(rounded_exp - 1) + 3)) - 8;
  return static_cast<uint8_t>(sign | (biased << 3) | mantissa);
}

void convert_to_f32(DType dtype, const void* src, float* dst, size_t count) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(in[i]);
      return;
    }
    case DType::kF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(in[i]);
      return;
    }
    case DType::kF8E4M3: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = f8e4m3_to_f32(in[i]);
      return;
    }
    case DType::kI64:
    case DType::kI32:
    case DType::kI16:
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      break;
  }
  MS_CHECK_MSG(false, "convert_to_f32 on a non-float dtype");
}

}  // namespace moeserve
