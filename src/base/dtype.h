// Element types of checkpoints and tensors, and scalar conversions between them. bf16, fp16
// and fp8 (e4m3fn) are stored as raw bits; arithmetic happens in float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace moeserve {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t dtype_size(DType dtype);
// Safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType dtype);
// Parses the safetensors spelling; nullopt for anything unknown.
std::optional<DType> parse_dtype(std::string_view name);
// True for the types model weights may be stored in.
bool is_float_dtype(DType dtype);

inline float bf16_to_f32(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

// Round-to-nearest-even, NaN kept quiet (as torch's .to(bfloat16)).
inline uint16_t f32_to_bf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40u);
  uint32_t rounding = 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>((word + rounding) >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
// float8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities, 0x7f/0xff are NaN.
float f8e4m3_to_f32(uint8_t bits);
// The e4m3fn nearest to value (ties to even), saturated to ±448; NaN stays NaN (0x7f). The
// largest finite magnitude, kF8E4M3Max, is what block quantization scales amax to.
uint8_t f32_to_f8e4m3(float value);
inline constexpr float kF8E4M3Max = 448.0f;
// value rounded to the nearest e4m3 number (saturating), as float32.
inline float round_to_f8e4m3(float value) { return f8e4m3_to_f32(f32_to_f8e4m3(value)); }

// Converts `count` elements of `dtype` at `src` to float32. `dtype` must be a float type.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t count);

}  // namespace moeserve
