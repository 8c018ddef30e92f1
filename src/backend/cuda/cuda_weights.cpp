// Loading a CudaModel: the weight plan (model/weight_plan.h, the one list every backend reads)
// loaded by model/model_weights into device memory — each entry converted to bf16 (GPT-OSS's
// MXFP4 experts kept as published) and uploaded once, each packing group stacked — or, with no
// WeightSource (--load-format dummy), random
// weights generated on the device (normal(0, 0.02) from a hash of the tensor's name, norms 1.0).
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/ranges.h>

#include "model/backend_support.h"
#include "model/sharded_weights.h"
#include "model/weight_plan.h"
#include "backend/cuda/cuda_model.h"

namespace moeserve::cuda {

// A CudaModel's weight allocations: each a device buffer the model keeps.
class CudaWeightMemory final : public WeightMemory {
 public:
  CudaWeightMemory(CudaModel& model, const GpuExec& exec) : model_(model), exec_(exec) {}

  Result<void*> allocate(size_t bytes) override {
    MS_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::allocate(std::max<size_t>(bytes, 1)));
    void* ptr = buffer.data();
    model_.weight_bytes_ += buffer.bytes();
    model_.buffers_.push_back(std::move(buffer));
    return ptr;
  }

  // GPT-OSS's experts stay MXFP4, block-scaled FP8 weights FP8 (small_gemm and mma_gemm stream
  // them; cuBLAS multiplies a bf16 copy made for the GEMM).
  bool holds_mxfp4() const override { return true; }
  bool holds_fp8() const override { return true; }

  void write(void* dst, const void* host, size_t bytes) override {
    copy_to_device(dst, host, bytes, exec_.stream);
    synchronize_stream(exec_.stream);  // the caller reuses its host buffer
  }

  Status fill_random(void* dst, DType dtype, int64_t count, uint64_t seed, float stddev, float constant) override {
    if (dtype == DType::kBF16) {
      fill_random_bf16(exec_, static_cast<uint16_t*>(dst), count, seed, stddev, constant);
      return ok_status();
    }
    if (dtype == DType::kU8) {
      fill_random_bytes(exec_, static_cast<uint8_t*>(dst), count, seed, stddev != 0.0f, static_cast<uint8_t>(constant));
      return ok_status();
    }
    if (dtype == DType::kF8E4M3) {  // the exponent's top bit clear: |value| < 2, never NaN
      fill_random_bytes(exec_, static_cast<uint8_t*>(dst), count, seed, true, 0, 0xbf);
      return ok_status();
    }
    MS_CHECK(dtype == DType::kF32);
    MS_ASSIGN_OR_RETURN(DeviceBuffer bits, DeviceBuffer::allocate(static_cast<size_t>(std::max<int64_t>(count, 1)) * 2));
    fill_random_bf16(exec_, bits.as<uint16_t>(), count, seed, stddev, constant);
    to_f32(exec_, bits.as<uint16_t>(), count, static_cast<float*>(dst));
    synchronize_stream(exec_.stream);  // before `bits` is freed
    return ok_status();
  }

 private:
  CudaModel& model_;
  GpuExec exec_;
};

namespace {

// A config with features the CUDA kernels do not compute yet, refused by name rather than run wrong.
Status check_cuda_support(const ModelConfig& config) {
  const std::vector<std::string> missing = cuda_missing_features(config);
  if (missing.empty()) return ok_status();
  return make_error(
      "{} needs {}, which the CUDA backend does not implement yet; the CPU backend (--device cpu) runs it",
      config.architecture_name, fmt::join(missing, ", "));
}

}  // namespace

Result<std::unique_ptr<CudaModel>> CudaModel::load(const ModelConfig& config, const WeightSource* weights,
                                                   uint64_t seed, const GpuExec& exec, PrefillPrecision precision,
                                                   const ShardSpec& shard, const WeightPrecision& weight_precision) {
  MS_RETURN_IF_ERROR(check_cuda_support(config));
  auto model = std::make_unique<CudaModel>();
  model->config_ = config;
  model->shard_ = shard;
  model->exec_ = exec;
  model->precision_ = precision;
  const WeightPlan plan = WeightPlan::build(model->config_);
  CudaWeightMemory memory(*model, exec);
  if (weights == nullptr) {
    MS_ASSIGN_OR_RETURN(model->weights_,
                        load_random_model_weights(model->config_, plan, seed, memory, shard, weight_precision));
  } else {
    std::vector<Tensor> copies;  // column blocks copied out of the checkpoint (none on one rank)
    MS_ASSIGN_OR_RETURN(model->weights_, load_model_weights(model->config_, ShardedWeights(*weights, plan, copies),
                                                            shard, memory, weight_precision));
  }
  synchronize_stream(exec.stream);
  model->loop_ = std::make_unique<DecoderLoop>(model->config_, model->weights_, shard);
  return model;
}

}  // namespace moeserve::cuda
