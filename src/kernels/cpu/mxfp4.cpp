// CPU reference: MXFP4 → bf16 (ops::dequantize_mxfp4), the format of GPT-OSS's published experts.
#include <cmath>
#include <limits>

#include "base/dtype.h"
#include "kernels/ops.h"

namespace moeserve::ops {

namespace {

// e2m1 (1 sign, 2 exponent, 1 mantissa bit) code → value.
constexpr float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                             -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
constexpr int64_t kMxBlock = 32;

}  // namespace

void dequantize_mxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, uint16_t* out) {
  const int64_t groups = cols / kMxBlock;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t e8m0 = scales[r * groups + g];
      const float scale = e8m0 == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int{e8m0} - 127);
      const uint8_t* bytes = blocks + (r * groups + g) * (kMxBlock / 2);  // [16]
      uint16_t* dst = out + r * cols + g * kMxBlock;                      // [32]
      for (int64_t b = 0; b < kMxBlock / 2; ++b) {
        dst[2 * b] = f32_to_bf16(kE2m1[bytes[b] & 0x0F] * scale);
        dst[2 * b + 1] = f32_to_bf16(kE2m1[bytes[b] >> 4] * scale);
      }
    }
  }
}

}  // namespace moeserve::ops
