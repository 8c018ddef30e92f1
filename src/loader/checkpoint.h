// A Hugging Face checkpoint directory: model.safetensors, or shards listed by
// model.safetensors.index.json. Every shard is mmapped and validated on open; tensors are
// looked up by name with the shape the architecture expects, and a mismatch is an error that
// names the file, the tensor and both shapes.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "loader/safetensors.h"
#include "loader/weight_source.h"

namespace moeserve {

class Checkpoint : public WeightSource {
 public:
  static Result<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return location_.count(name) != 0; }
  std::vector<std::string> tensor_names() const;
  // The file holding `name` (for error messages); empty when absent.
  std::string file_of(const std::string& name) const;

  // A tensor the architecture needs: present, of a float dtype, with exactly `expected` shape.
  Result<TensorView> require(const std::string& name, const Shape& expected) const override;
  // Like require, but an absent tensor gives a null view instead of an error.
  Result<TensorView> optional(const std::string& name, const Shape& expected) const override;
  Result<TensorView> optional_bytes(const std::string& name, const Shape& expected) const override;
  Result<std::optional<float>> optional_scalar(const std::string& name) const override;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> location_;
};

}  // namespace moeserve
