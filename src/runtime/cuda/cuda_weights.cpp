// Loading a CudaModel: the weight plan (model/weight_plan.h, the one list every backend reads)
// loaded by model/model_weights into device memory — each entry converted to bf16 and uploaded
// once, each packing group stacked — or, with no WeightSource (--load-format dummy), random
// weights generated on the device (normal(0, 0.02) from a hash of the tensor's name, norms 1.0).
#include <algorithm>
#include <vector>

#include "model/sharded_weights.h"
#include "model/weight_plan.h"
#include "runtime/cuda/cuda_model.h"

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

  void write(void* dst, const void* host, size_t bytes) override {
    copy_to_device(dst, host, bytes, exec_.stream);
    synchronize_stream(exec_.stream);  // the caller reuses its host buffer
  }

  Status fill_random(void* dst, DType dtype, int64_t count, uint64_t seed, float stddev, float constant) override {
    if (dtype == DType::kBF16) {
      fill_random_bf16(exec_, static_cast<uint16_t*>(dst), count, seed, stddev, constant);
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

Result<std::unique_ptr<CudaModel>> CudaModel::load(const ModelConfig& config, const WeightSource* weights,
                                                   uint64_t seed, const GpuExec& exec, PrefillPrecision precision) {
  // Llama 4's attention features have CPU kernels only (kernels/cpu/attention.cpp) so far.
  const bool chunked = std::find(config.layer_chunked.begin(), config.layer_chunked.end(), true) !=
                       config.layer_chunked.end();
  const bool nope = std::find(config.layer_nope.begin(), config.layer_nope.end(), true) != config.layer_nope.end();
  if (chunked || nope || config.qk_l2_norm || (config.moe && config.moe->scale_expert_input)) {
    return make_error("{}: the CUDA backend has no kernels yet for its chunked local attention, NoPE layers with "
                      "attention-temperature tuning, L2 QK-norm and input-scaled experts; the CPU backend runs it "
                      "(--device cpu)",
                      config.architecture_name);
  }
  auto model = std::make_unique<CudaModel>();
  model->config_ = config;
  model->precision_ = precision;
  const WeightPlan plan = WeightPlan::build(model->config_);
  CudaWeightMemory memory(*model, exec);
  if (weights == nullptr) {
    MS_ASSIGN_OR_RETURN(model->weights_, load_random_model_weights(model->config_, plan, seed, memory));
  } else {
    std::vector<Tensor> copies;  // column blocks copied out of the checkpoint (none on one rank)
    MS_ASSIGN_OR_RETURN(model->weights_,
                        load_model_weights(model->config_, ShardedWeights(*weights, plan, copies), ShardSpec{}, memory));
  }
  synchronize_stream(exec.stream);
  model->loop_ = std::make_unique<DecoderLoop>(model->config_, model->weights_);
  return model;
}

}  // namespace moeserve::cuda
