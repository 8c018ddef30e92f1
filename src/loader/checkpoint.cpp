#include "loader/checkpoint.h"

#include <filesystem>
#include <set>

#include "loader/json_file.h"

namespace moeserve {
namespace fs = std::filesystem;

// fs::exists without the error_code throws (and so aborts start-up) on, e.g., a directory we may
// not search; such a path counts as absent here and the caller's message names it.
static bool path_exists(const fs::path& path) {
  std::error_code error;
  return fs::exists(path, error);
}

Result<Checkpoint> Checkpoint::open(const std::string& dir) {
  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  const fs::path single_path = root / "model.safetensors";

  if (path_exists(index_path)) {
    MS_ASSIGN_OR_RETURN(nlohmann::json index, read_json_file(index_path.string()));
    const auto weight_map = index.find("weight_map");
    if (weight_map == index.end() || !weight_map->is_object()) {
      return make_error("{}: missing 'weight_map' object", index_path.string());
    }
    std::map<std::string, const SafetensorsFile*> shard_by_name;
    for (const auto& [tensor_name, shard] : weight_map->items()) {
      if (!shard.is_string()) {
        return make_error("{}: weight_map['{}'] is not a file name", index_path.string(), tensor_name);
      }
      const std::string shard_name = shard.get<std::string>();
      if (shard_name.find('/') != std::string::npos || shard_name.find("..") != std::string::npos) {
        return make_error("{}: shard name '{}' must be a plain file name", index_path.string(), shard_name);
      }
      auto it = shard_by_name.find(shard_name);
      if (it == shard_by_name.end()) {
        const fs::path shard_path = root / shard_name;
        if (!path_exists(shard_path)) {
          return make_error("{}: shard '{}' (holding '{}') is missing", index_path.string(), shard_name, tensor_name);
        }
        MS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(shard_path.string()));
        it = shard_by_name.emplace(shard_name, file.get()).first;
        checkpoint.files_.push_back(std::move(file));
      }
      if (!it->second->contains(tensor_name)) {
        return make_error("{}: tensor '{}' is listed in {} but not present in it", it->second->path(), tensor_name,
                          index_path.filename().string());
      }
      checkpoint.location_[tensor_name] = it->second;
    }
  } else if (path_exists(single_path)) {
    MS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single_path.string()));
    for (const auto& [tensor_name, entry] : file->entries()) checkpoint.location_[tensor_name] = file.get();
    checkpoint.files_.push_back(std::move(file));
  } else {
    return make_error("{}: no model.safetensors or model.safetensors.index.json found", dir);
  }
  return checkpoint;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : location_) names.push_back(name);
  return names;
}

std::string Checkpoint::file_of(const std::string& name) const {
  const auto it = location_.find(name);
  return it == location_.end() ? std::string() : it->second->path();
}

Result<TensorView> Checkpoint::optional(const std::string& name, const Shape& expected) const {
  const auto it = location_.find(name);
  if (it == location_.end()) return TensorView{};
  TensorView view = it->second->view(name);
  if (!is_float_dtype(view.dtype)) {
    return make_error("{}: tensor '{}' has dtype {}, expected a float type (F32, F16, BF16, F8_E4M3)",
                      it->second->path(), name, dtype_name(view.dtype));
  }
  if (!(view.shape == expected)) {
    return make_error("{}: tensor '{}' has shape {}, expected {}", it->second->path(), name, view.shape.to_string(),
                      expected.to_string());
  }
  return view;
}

Result<TensorView> Checkpoint::optional_bytes(const std::string& name, const Shape& expected) const {
  const auto it = location_.find(name);
  if (it == location_.end()) return TensorView{};
  TensorView view = it->second->view(name);
  if (view.dtype != DType::kU8 || !(view.shape == expected)) {
    return make_error("{}: tensor '{}' is {} {}, expected U8 {}", it->second->path(), name, dtype_name(view.dtype),
                      view.shape.to_string(), expected.to_string());
  }
  return view;
}

Result<std::optional<float>> Checkpoint::optional_scalar(const std::string& name) const {
  const auto it = location_.find(name);
  if (it == location_.end()) return std::optional<float>();
  const TensorView view = it->second->view(name);
  const bool scalar = view.shape == Shape{} || view.shape == Shape{1};
  if (!scalar || !is_float_dtype(view.dtype) || view.dtype == DType::kF8E4M3) {
    return make_error("{}: tensor '{}' is {} {}, expected a float32, bf16 or fp16 scalar (or [1])", it->second->path(),
                      name, dtype_name(view.dtype), view.shape.to_string());
  }
  float value = 0.0f;
  convert_to_f32(view.dtype, view.data, &value, 1);
  return std::optional<float>(value);
}

Result<TensorView> Checkpoint::require(const std::string& name, const Shape& expected) const {
  if (!has(name)) return make_error("{}: required tensor '{}' is missing from the checkpoint", dir_, name);
  return optional(name, expected);
}

}  // namespace moeserve
