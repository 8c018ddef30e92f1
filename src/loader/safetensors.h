// One .safetensors file: an 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the data. Opening validates every claim the
// header makes (length, JSON, dtypes, shapes, offsets inside the data and not overlapping,
// shape × dtype = byte length), so a TensorView handed out can never read past the file.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "loader/mapped_file.h"
#include "tensor/tensor.h"

namespace moeserve {

struct SafetensorsEntry {
  DType dtype;
  Shape shape;
  size_t begin;  // byte offset into the data section
  size_t end;
};

class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // View of a tensor known to exist (check `contains` first).
  TensorView view(const std::string& name) const;

 private:
  MappedFile file_;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes float32/int64 tensors to a .safetensors file (for `moeserve logits --out`).
struct NamedTensor {
  std::string name;
  TensorView view;
};
Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors);

}  // namespace moeserve
