// OpenBLAS access for the CPU ops. Our thread pool splits the work, so OpenBLAS must not spawn
// threads of its own inside each chunk: every op calls use_single_threaded_blas() first.
#pragma once

#include <cblas.h>

#include <mutex>

namespace moeserve::ops {

inline void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

}  // namespace moeserve::ops
