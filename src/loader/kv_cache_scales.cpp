#include "loader/kv_cache_scales.h"

#include <string_view>

namespace moeserve {

namespace {

bool names_a_kv_scale(std::string_view name) {
  for (std::string_view suffix : {".k_scale", ".v_scale", ".kv_scale"}) {
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return true;
  }
  return false;
}

}  // namespace

Result<std::vector<KvCacheScale>> read_kv_cache_scales(const Checkpoint& checkpoint) {
  std::vector<KvCacheScale> scales;
  for (const std::string& name : checkpoint.tensor_names()) {
    if (!names_a_kv_scale(name)) continue;
    TensorView view;
    for (const Shape& shape : {Shape{}, Shape{1}}) {
      auto found = checkpoint.optional(name, shape);
      if (found.ok()) {
        view = *found;
        break;
      }
    }
    if (view.data == nullptr || view.dtype == DType::kF8E4M3) {
      return make_error("{}: KV cache scale '{}' must be a float32, bf16 or fp16 scalar (or [1])",
                        checkpoint.file_of(name), name);
    }
    float value = 0.0f;
    convert_to_f32(view.dtype, view.data, &value, 1);
    scales.push_back(KvCacheScale{name, value});
  }
  return scales;
}

Status check_kv_cache_scales(const Checkpoint& checkpoint, bool kv_cache_fp8) {
  if (!kv_cache_fp8) return ok_status();
  MS_ASSIGN_OR_RETURN(const std::vector<KvCacheScale> scales, read_kv_cache_scales(checkpoint));
  for (const KvCacheScale& scale : scales) {
    if (scale.value != 1.0f) {
      return make_error(
          "{}: the checkpoint carries KV cache scales ('{}' = {}), which --kv-cache-dtype fp8 does not apply yet: "
          "moeserve stores K and V in e4m3 at scale 1.0 (vLLM's default), which would differ from vLLM serving this "
          "checkpoint; use --kv-cache-dtype auto",
          checkpoint.file_of(scale.name), scale.name, scale.value);
    }
  }
  return ok_status();
}

}  // namespace moeserve
