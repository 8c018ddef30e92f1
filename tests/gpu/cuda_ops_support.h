// The CPU side of the CUDA op tests (cuda_ops_test, cuda_gemm_test): a fixture with an
// ExecContext for the reference ops (kernels/cpu) and TensorViews over host vectors.
#pragma once

#include <vector>

#include "base/thread_pool.h"
#include "gpu_test_support.h"
#include "kernels/ops.h"

namespace moeserve::testing {

inline TensorView view(void* data, DType dtype, Shape shape) { return TensorView{data, dtype, shape}; }
inline TensorView f32_view(std::vector<float>& v, Shape shape) { return view(v.data(), DType::kF32, shape); }

class CudaOpsTest : public GpuTest {
 protected:
  ThreadPool pool_{2};
  ExecContext cpu_{&pool_};
};

}  // namespace moeserve::testing
