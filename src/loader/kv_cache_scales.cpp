#include "loader/kv_cache_scales.h"

#include <cmath>
#include <optional>
#include <regex>
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

Result<ops::KvScales> read_attention_kv_scales(const WeightSource& weights, const std::string& prefix) {
  MS_ASSIGN_OR_RETURN(const std::optional<float> both, weights.optional_scalar(prefix + "kv_scale"));
  MS_ASSIGN_OR_RETURN(const std::optional<float> k, weights.optional_scalar(prefix + "k_scale"));
  MS_ASSIGN_OR_RETURN(const std::optional<float> v, weights.optional_scalar(prefix + "v_scale"));
  const ops::KvScales scales{.k = k.value_or(both.value_or(1.0f)), .v = v.value_or(both.value_or(1.0f))};
  for (const float scale : {scales.k, scales.v}) {
    if (!std::isfinite(scale) || scale <= 0.0f) {
      return make_error("KV cache scale {} of '{}' must be positive and finite", scale, prefix);
    }
  }
  return scales;
}

Status check_kv_cache_scales(const Checkpoint& checkpoint, bool kv_cache_fp8) {
  if (!kv_cache_fp8) return ok_status();
  static const std::regex read_by_the_loader(R"((^|.*\.)layers\.[0-9]+\.self_attn\.(k|v|kv)_scale)");
  for (const std::string& name : checkpoint.tensor_names()) {
    if (!names_a_kv_scale(name) || std::regex_match(name, read_by_the_loader)) continue;
    return make_error(
        "{}: the checkpoint carries a KV cache scale '{}' that moeserve does not know where to apply (it reads "
        "<layers.N.self_attn>.k_scale, .v_scale and .kv_scale); use --kv-cache-dtype auto",
        checkpoint.file_of(name), name);
  }
  return ok_status();
}

}  // namespace moeserve
