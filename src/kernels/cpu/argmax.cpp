// CPU reference: greedy token choice, the first index of each row's largest value.
#include "kernels/ops.h"

namespace moeserve::ops {

void argmax_rows(ExecContext& ctx, const float* x, int rows, int64_t width, int32_t* out) {
  for (int r = 0; r < rows; ++r) {
    const float* row = x + r * width;
    int64_t best = 0;
    for (int64_t i = 1; i < width; ++i) {
      if (row[i] > row[best]) best = i;
    }
    out[r] = static_cast<int32_t>(best);
  }
}

}  // namespace moeserve::ops
